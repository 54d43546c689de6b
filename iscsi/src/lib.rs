//! Skeleton: the iSCSI initiator side is not written yet (see the attach issue).
