//! Printing a Redis URL without its password.
//!
//! A URL such as `redis://app:s3cret@cache:6379/0` carries a secret. Everything the lab prints
//! (errors, banners, RESULT lines) goes through [`redact_url`] first.

/// The URL with any password replaced by `***`; the user name, host, port and path are kept so
/// that an error still says which server was meant.
///
/// ```
/// assert_eq!(lab::redact::redact_url("redis://app:s3cret@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(lab::redact::redact_url("redis://:s3cret@cache"), "redis://:***@cache");
/// assert_eq!(lab::redact::redact_url("redis://cache:6379"), "redis://cache:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL we understand: it may still hold a secret, so show only its shape.
        return format!("<unparsable URL of {} characters>", url.chars().count());
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // The last '@' ends the user info: a password may itself contain '@'.
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let user_info = &authority[..at];
    let redacted_user_info = match user_info.find(':') {
        Some(colon) => format!("{}:***", &user_info[..colon]),
        // `redis://secret@host`: some clients read a lone user-info part as a password.
        None => "***".to_string(),
    };
    format!(
        "{}{}@{}",
        &url[..authority_start],
        redacted_user_info,
        &url[authority_start + at + 1..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_keeps_the_rest() {
        assert_eq!(
            redact_url("redis://u:p@h:1/2?x=y"),
            "redis://u:***@h:1/2?x=y"
        );
        assert_eq!(redact_url("rediss://:p@a@h"), "rediss://:***@h");
        assert_eq!(redact_url("redis://p@h"), "redis://***@h");
        assert_eq!(
            redact_url("redis+unix:///tmp/r.sock"),
            "redis+unix:///tmp/r.sock"
        );
        assert!(!redact_url("not a url with s3cret").contains("s3cret"));
    }
}
