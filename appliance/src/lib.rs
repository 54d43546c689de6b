//! Skeleton: the reference appliance is being written (see the appliance/lab issue).
