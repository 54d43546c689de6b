//! Skeleton: the LVM2 on-disk reader and clone import are not written yet (see the clone-import issue).
