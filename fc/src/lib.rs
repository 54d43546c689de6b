//! Skeleton: Fibre Channel enumeration and scans are not written yet (see the attach issue).
