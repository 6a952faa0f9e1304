//! Kubeconfigs that arrive as data: the bytes of a RemoteCluster's Secret.
//!
//! kube-client runs a kubeconfig's `exec` plugins and `auth-provider` commands and reads the files it
//! names (`tokenFile`, `client-certificate`, `client-key`, `certificate-authority`) when a client is
//! built or used. For a kubeconfig that anyone allowed to write a Secret can supply, that is code
//! execution in the operator and a way to send the operator's own files (its service account token) to
//! a server of the author's choosing. So a kubeconfig read as data is checked first
//! ([`KubeconfigTrust::DataOnly`], the default) and such entries are refused, and no error made from it
//! quotes what was read: messages say what is wrong (`users[0]: an exec plugin`), never the bytes (a
//! Secret that holds a password must not show it in a condition).
//!
//! A person's own kubeconfig (the CLI's `--kubeconfig`, `KUBECONFIG`) is not data: it is used as
//! written, cloud exec plugins included.

use kube::config::{Kubeconfig, KubeconfigError};

/// What a kubeconfig read as data may make the client do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeconfigTrust {
    /// Only what it holds: exec plugins, auth providers and file references are refused.
    #[default]
    DataOnly,
    /// Exec plugins, auth providers and file references too (the operator's `--allow-kubeconfig-exec`:
    /// whoever may write the Secret may then run commands as the operator and read its files).
    AllowExec,
}

/// What a kubeconfig holds that runs a command or reads a file when a client is built or used, one
/// entry per finding (`users[0]: an exec plugin`), named by position, never by content.
pub fn code_and_files(kc: &Kubeconfig) -> Vec<String> {
    let mut found = Vec::new();
    for (i, user) in kc.auth_infos.iter().enumerate() {
        let Some(auth) = &user.auth_info else {
            continue;
        };
        let mut what = Vec::new();
        if auth.exec.is_some() {
            what.push("an exec plugin");
        }
        if auth.auth_provider.is_some() {
            what.push("an auth provider");
        }
        if auth.token_file.is_some() {
            what.push("a token file (tokenFile)");
        }
        if auth.client_certificate.is_some() {
            what.push("a client certificate file (client-certificate)");
        }
        if auth.client_key.is_some() {
            what.push("a client key file (client-key)");
        }
        found.extend(what.into_iter().map(|w| format!("users[{i}]: {w}")));
    }
    for (i, cluster) in kc.clusters.iter().enumerate() {
        if cluster
            .cluster
            .as_ref()
            .is_some_and(|c| c.certificate_authority.is_some())
        {
            found.push(format!(
                "clusters[{i}]: a certificate authority file (certificate-authority)"
            ));
        }
    }
    found
}

/// Parse kubeconfig `bytes` read as data and check it against `trust`.
///
/// # Errors
/// A message (never quoting the input) when the bytes are not a kubeconfig, or hold what `trust` refuses.
pub fn parse(bytes: &[u8], trust: KubeconfigTrust) -> Result<Kubeconfig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let kc = Kubeconfig::from_yaml(text).map_err(|e| describe(&e, None))?;
    if kc.clusters.is_empty() || kc.auth_infos.is_empty() && kc.contexts.is_empty() {
        return Err("it is not a kubeconfig (no clusters, users or contexts)".to_owned());
    }
    if trust == KubeconfigTrust::DataOnly {
        let found = code_and_files(&kc);
        if !found.is_empty() {
            return Err(format!(
                "it runs commands or reads files, which a kubeconfig from a Secret may not: {}. Use a \
                 flattened kubeconfig with a token or embedded certificates (see docs/security.md), or \
                 start the operator with --allow-kubeconfig-exec",
                found.join(", ")
            ));
        }
    }
    Ok(kc)
}

/// What is wrong, from kube's error about a kubeconfig read as data, without quoting it. `context` is
/// the context the caller asked for (its name is the caller's, not the data's).
pub fn describe(e: &KubeconfigError, context: Option<&str>) -> String {
    use KubeconfigError as E;
    match e {
        E::Parse(_) => "it is not valid kubeconfig YAML".into(),
        E::CurrentContextNotSet => "it names no current context".into(),
        E::LoadContext(_) => match context {
            Some(c) => format!("it has no context {c}"),
            None => "it has no entry for its current context".into(),
        },
        E::LoadClusterOfContext(_) => "its context names a cluster it does not have".into(),
        E::MissingClusterUrl => "its cluster has no server URL".into(),
        E::ParseClusterUrl(_) => "its cluster's server URL is not a valid URL".into(),
        E::ParseProxyUrl(_) => "its proxy-url is not a valid URL".into(),
        E::LoadCertificateAuthority(_) => {
            "its certificate-authority-data could not be loaded (not base64?)".into()
        }
        E::LoadClientCertificate(_) => "its client-certificate-data could not be loaded (not base64?)".into(),
        E::LoadClientKey(_) => "its client-key-data could not be loaded (not base64?)".into(),
        E::ParseCertificates(_) => "its certificate data is not PEM-encoded certificates".into(),
        E::KindMismatch | E::ApiVersionMismatch => {
            "its documents have different kinds or API versions".into()
        }
        _ => "it could not be turned into a client configuration".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', certificate-authority-data: Zm9v}}]
users: [{name: u, user: {token: s3cret-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
";

    fn with_user(user: &str) -> String {
        TOKEN.replace("{token: s3cret-token}", user)
    }

    #[test]
    fn a_flattened_token_kubeconfig_is_data() {
        let kc = parse(TOKEN.as_bytes(), KubeconfigTrust::DataOnly).unwrap();
        assert!(code_and_files(&kc).is_empty());
    }

    #[test]
    fn commands_and_files_are_refused_unless_allowed() {
        for (user, finding) in [
            (
                "{exec: {apiVersion: client.authentication.k8s.io/v1, command: touch, args: [/tmp/pwned]}}",
                "users[0]: an exec plugin",
            ),
            (
                "{auth-provider: {name: gcp, config: {cmd-path: /bin/sh}}}",
                "users[0]: an auth provider",
            ),
            (
                "{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}",
                "users[0]: a token file",
            ),
            (
                "{client-certificate: /etc/passwd, client-key: /etc/shadow}",
                "users[0]: a client key file",
            ),
        ] {
            let yaml = with_user(user);
            let err = parse(yaml.as_bytes(), KubeconfigTrust::DataOnly).unwrap_err();
            assert!(err.contains(finding), "{err}");
            for leaked in ["/tmp/pwned", "/bin/sh", "serviceaccount", "/etc/", "touch"] {
                assert!(!err.contains(leaked), "{err}");
            }
            assert!(
                parse(yaml.as_bytes(), KubeconfigTrust::AllowExec).is_ok(),
                "{user}"
            );
        }
        let ca_file = TOKEN.replace(
            "certificate-authority-data: Zm9v",
            "certificate-authority: /etc/ca",
        );
        let err = parse(ca_file.as_bytes(), KubeconfigTrust::DataOnly).unwrap_err();
        assert!(err.contains("clusters[0]: a certificate authority file"), "{err}");
    }

    #[test]
    fn errors_never_quote_the_secret() {
        for bytes in [
            &b"hunter2-password"[..],
            b"password: hunter2-password\n",
            b"{clusters: [hunter2-password",
            b"\xff\xfehunter2-password",
        ] {
            let err = parse(bytes, KubeconfigTrust::AllowExec).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let e = KubeconfigError::LoadContext("hunter2-password".into());
        assert!(!describe(&e, None).contains("hunter2"));
        assert!(describe(&e, Some("mine")).contains("mine"));
    }
}
