//! iscsiadm's exit codes (open-iscsi `iscsi_err.h`, documented in
//! iscsiadm(8) "EXIT STATUS"), so errors say what a number means.

/// `ISCSI_ERR_SESS_NOT_FOUND`: no such session.
pub const SESS_NOT_FOUND: i32 = 2;
/// `ISCSI_ERR_LOGIN_AUTH_FAILED`: CHAP/ACL refused the login.
pub const LOGIN_AUTH_FAILED: i32 = 24;
/// `ISCSI_ERR_SESS_EXISTS`: already logged in.
pub const SESS_EXISTS: i32 = 15;
/// `ISCSI_ERR_NO_OBJS_FOUND`: no matching record/session.
pub const NO_OBJS_FOUND: i32 = 21;

const TABLE: &[(&str, &str)] = &[
    ("ISCSI_SUCCESS", "command executed successfully"),
    ("ISCSI_ERR", "generic error"),
    ("ISCSI_ERR_SESS_NOT_FOUND", "session could not be found"),
    (
        "ISCSI_ERR_NOMEM",
        "could not allocate resource for operation",
    ),
    (
        "ISCSI_ERR_TRANS",
        "connect problem caused operation to fail",
    ),
    ("ISCSI_ERR_LOGIN", "generic iSCSI login failure"),
    (
        "ISCSI_ERR_IDBM",
        "error accessing/managing the iSCSI node database",
    ),
    ("ISCSI_ERR_INVAL", "invalid argument"),
    (
        "ISCSI_ERR_TRANS_TIMEOUT",
        "connection timer expired while trying to connect",
    ),
    (
        "ISCSI_ERR_INTERNAL",
        "generic internal iscsid/kernel failure",
    ),
    ("ISCSI_ERR_LOGOUT", "iSCSI logout failed"),
    ("ISCSI_ERR_PDU_TIMEOUT", "iSCSI PDU timed out"),
    (
        "ISCSI_ERR_TRANS_NOT_FOUND",
        "iSCSI transport module not loaded in kernel or iscsid",
    ),
    (
        "ISCSI_ERR_ACCESS",
        "no permission to access iscsid or run iscsiadm",
    ),
    (
        "ISCSI_ERR_TRANS_CAPS",
        "transport module did not support the operation",
    ),
    ("ISCSI_ERR_SESS_EXISTS", "session is already logged in"),
    (
        "ISCSI_ERR_INVALID_MGMT_REQ",
        "invalid IPC management request",
    ),
    (
        "ISCSI_ERR_ISNS_UNAVAILABLE",
        "iSNS service is not supported",
    ),
    ("ISCSI_ERR_ISCSID_COMM_ERR", "a read/write to iscsid failed"),
    ("ISCSI_ERR_FATAL_LOGIN", "fatal iSCSI login error"),
    (
        "ISCSI_ERR_ISCSID_NOTCONN",
        "could not connect to iscsid (is it running?)",
    ),
    (
        "ISCSI_ERR_NO_OBJS_FOUND",
        "no records/targets/sessions/portals found",
    ),
    (
        "ISCSI_ERR_SYSFS_LOOKUP",
        "could not look up object in sysfs",
    ),
    ("ISCSI_ERR_HOST_NOT_FOUND", "could not look up host"),
    (
        "ISCSI_ERR_LOGIN_AUTH_FAILED",
        "login failed due to authorization failure (CHAP or ACL)",
    ),
    ("ISCSI_ERR_ISNS_QUERY", "iSNS query failure"),
    (
        "ISCSI_ERR_ISNS_REG_FAILED",
        "iSNS registration/deregistration failed",
    ),
    ("ISCSI_ERR_OP_NOT_SUPP", "operation not supported"),
    ("ISCSI_ERR_BUSY", "device or resource in use"),
    (
        "ISCSI_ERR_AGAIN",
        "operation failed, but retrying later may succeed",
    ),
    ("ISCSI_ERR_UNKNOWN_DISCOVERY_TYPE", "unknown discovery type"),
    ("ISCSI_ERR_CHILD_TERMINATED", "child process terminated"),
    (
        "ISCSI_ERR_SESSION_NOT_CONNECTED",
        "session likely not connected",
    ),
];

/// Symbolic name and meaning of an iscsiadm exit code.
pub fn describe(code: i32) -> (&'static str, &'static str) {
    usize::try_from(code)
        .ok()
        .and_then(|i| TABLE.get(i).copied())
        .unwrap_or(("UNKNOWN", "exit code not documented by open-iscsi"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_numbers() {
        assert_eq!(describe(SESS_EXISTS).0, "ISCSI_ERR_SESS_EXISTS");
        assert_eq!(describe(LOGIN_AUTH_FAILED).0, "ISCSI_ERR_LOGIN_AUTH_FAILED");
        assert_eq!(describe(NO_OBJS_FOUND).0, "ISCSI_ERR_NO_OBJS_FOUND");
        assert_eq!(describe(SESS_NOT_FOUND).0, "ISCSI_ERR_SESS_NOT_FOUND");
        assert_eq!(describe(32).0, "ISCSI_ERR_SESSION_NOT_CONNECTED");
        assert_eq!(describe(99).0, "UNKNOWN");
        assert_eq!(describe(-1).0, "UNKNOWN");
    }
}
