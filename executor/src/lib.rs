//! Skeleton: host identity, device inventory and targeted attach are not written yet (see the attach issue).
