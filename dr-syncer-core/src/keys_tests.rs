use std::{
    path::Path,
    process::Command,
    time::{Duration, SystemTime},
};

use rstest::rstest;

use super::*;

fn ssh_keygen(args: &[&str]) -> String {
    let out = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write_private(dir: &Path, name: &str, pem: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn generated_ed25519_pairs_are_openssh_and_fingerprinted_like_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate_ed25519("dr-syncer-mover@dr").unwrap();
    let private = pair.private_key_openssh();
    assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    assert!(private.trim_end().ends_with("-----END OPENSSH PRIVATE KEY-----"));
    let public = pair.public_key().to_openssh();
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
    assert!(public.ends_with(" dr-syncer-mover@dr"));
    assert!(
        !format!("{pair:?}").contains("PRIVATE"),
        "Debug must not print the key"
    );

    // OpenSSH reads our private key and derives the same public key from it.
    let path = write_private(dir.path(), "id", &private);
    let derived = ssh_keygen(&["-y", "-f", &path]);
    assert_eq!(
        PublicKey::parse(&derived).unwrap().blob(),
        pair.public_key().blob()
    );
    // …and prints the fingerprint we compute.
    std::fs::write(dir.path().join("id.pub"), format!("{public}\n")).unwrap();
    let listed = ssh_keygen(&["-l", "-E", "sha256", "-f", &format!("{path}.pub")]);
    let fingerprint = listed.split_whitespace().nth(1).unwrap();
    assert_eq!(fingerprint, pair.fingerprint());
    assert!(fingerprint.starts_with("SHA256:"));

    // Two generated keys never coincide, and a key parses back to itself.
    let other = KeyPair::generate_ed25519("x").unwrap();
    assert_ne!(other.public_key().blob(), pair.public_key().blob());
    let parsed = KeyPair::parse(&private).unwrap();
    assert_eq!(parsed.public_key(), pair.public_key());
}

fn secret(private: &str, public: &str) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("id_rsa".to_string(), private.as_bytes().to_vec()),
        ("id_rsa.pub".to_string(), public.as_bytes().to_vec()),
    ])
}

#[test]
fn user_managed_pairs_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // As a user creates them: RSA (OpenSSH format and the legacy PEM the Go project wrote), ed25519.
    ssh_keygen(&["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", &path("rsa")]);
    ssh_keygen(&[
        "-q",
        "-t",
        "rsa",
        "-b",
        "2048",
        "-m",
        "PEM",
        "-N",
        "",
        "-f",
        &path("pem"),
    ]);
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &path("ed")]);
    ssh_keygen(&["-q", "-t", "ecdsa", "-N", "", "-f", &path("ec")]);
    let read = |n: &str| std::fs::read_to_string(path(n)).unwrap();
    assert!(read("pem").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    for name in ["rsa", "pem", "ed", "ec"] {
        let pair = UserKeyPair::from_secret_data(
            &secret(&read(name), &read(&format!("{name}.pub"))),
            "id_rsa",
            "id_rsa.pub",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(pair.public.blob(), pair.pair.public_key().blob());
        // What we hand to libssh2 is the OpenSSH form, whatever the Secret held.
        assert!(
            pair.pair
                .private_key_openssh()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
    }

    // Custom keys (privateKeyKey / publicKeyKey).
    let data = BTreeMap::from([
        ("key".to_string(), read("ed").into_bytes()),
        ("key.pub".to_string(), read("ed.pub").into_bytes()),
    ]);
    assert!(UserKeyPair::from_secret_data(&data, "key", "key.pub").is_ok());

    // The public key of another pair.
    let err = UserKeyPair::from_secret_data(&secret(&read("rsa"), &read("ed.pub")), "id_rsa", "id_rsa.pub")
        .unwrap_err();
    assert_eq!(err.kind(), "KeyMismatch");
    // Missing entries.
    let err = UserKeyPair::from_secret_data(&secret(&read("rsa"), &read("rsa.pub")), "id", "id_rsa.pub")
        .unwrap_err();
    assert!(matches!(err, KeyError::Missing(ref k) if k == "id"), "{err}");
    // Garbage, and a public key where the private one belongs.
    let err = UserKeyPair::from_secret_data(&secret("not a key", &read("rsa.pub")), "id_rsa", "id_rsa.pub")
        .unwrap_err();
    assert_eq!(err.kind(), "InvalidKey");
    assert!(err.to_string().contains("id_rsa"), "{err}");
    let err = UserKeyPair::from_secret_data(
        &secret(&read("rsa.pub"), &read("rsa.pub")),
        "id_rsa",
        "id_rsa.pub",
    )
    .unwrap_err();
    assert_eq!(err.kind(), "InvalidKey");
    let mut bad_utf8 = secret(&read("rsa"), &read("rsa.pub"));
    bad_utf8.insert("id_rsa.pub".into(), vec![0xff, 0xfe]);
    assert_eq!(
        UserKeyPair::from_secret_data(&bad_utf8, "id_rsa", "id_rsa.pub")
            .unwrap_err()
            .kind(),
        "InvalidKey"
    );
}

#[test]
fn encrypted_and_weak_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "secret", "-f", &path("enc")]);
    ssh_keygen(&["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", &path("weak")]);
    let read = |n: &str| std::fs::read_to_string(path(n)).unwrap();
    let err = KeyPair::parse(&read("enc")).unwrap_err();
    assert_eq!(err.kind(), "UnsupportedKey");
    assert!(err.to_string().contains("passphrase"), "{err}");
    let err = KeyPair::parse(&read("weak")).unwrap_err();
    assert_eq!(err.kind(), "UnsupportedKey");
    assert!(err.to_string().contains("1024"), "{err}");
}

#[test]
fn pins_match_only_their_keys_and_name_their_algorithms() {
    let a = KeyPair::generate_ed25519("a").unwrap();
    let b = KeyPair::generate_ed25519("b").unwrap();
    let pins = HostKeyPins::parse(&format!("# pinned\n\n{}\n", a.public_key())).unwrap();
    assert!(pins.find(&a.public_key().blob()).is_some());
    assert!(pins.find(&b.public_key().blob()).is_none());
    assert_eq!(pins.algorithms(), vec!["ssh-ed25519"]);
    assert_eq!(HostKeyPins::parse(&pins.to_text()).unwrap(), pins);
    assert!(HostKeyPins::parse("").is_err());
    assert!(HostKeyPins::parse("ssh-ed25519 notbase64!").is_err());
}

#[test]
fn rotation_keeps_the_old_key_for_a_grace_window() {
    let old = KeyPair::generate_ed25519("old").unwrap().public_key();
    let new = KeyPair::generate_ed25519("new").unwrap().public_key();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
    let mut keys = AuthorizedClientKeys::new([old.clone()]);
    keys.rotate(new.clone(), now + Duration::from_secs(3600));
    let text = keys.to_authorized_keys();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("expiry-time=\"20260101010000Z\" ssh-ed25519 "),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("ssh-ed25519 "));
    assert_eq!(AuthorizedClientKeys::parse(&text).unwrap(), keys);

    // Still inside the window: both; after it: only the new one.
    let mut inside = keys.clone();
    inside.prune(now);
    assert_eq!(inside.entries().len(), 2);
    keys.prune(now + Duration::from_secs(3601));
    assert_eq!(keys.entries().len(), 1);
    assert_eq!(keys.entries()[0].key, new);

    // Rotating to a key that is already there does not duplicate it.
    keys.rotate(new.clone(), now);
    assert_eq!(keys.entries().len(), 1);
}

#[rstest]
#[case("from=\"10.0.0.1\" ssh-ed25519 AAAA")]
#[case("expiry-time=\"2026\" ssh-ed25519 AAAA")]
#[case("expiry-time=\"20260101000000\" ssh-ed25519 AAAA")]
#[case("expiry-time=\"20260101000000Z ssh-ed25519 AAAA")]
fn authorized_keys_with_other_options_are_refused(#[case] line: &str) {
    assert!(AuthorizedClientKeys::parse(line).is_err(), "{line}");
}

#[test]
fn secrets_are_named_per_remote_cluster() {
    let a = KeySecrets::for_remote_cluster("prod");
    let b = KeySecrets::for_remote_cluster("dr");
    assert_eq!(a.host_keys(), "dr-syncer-agent-host-keys-prod");
    assert_eq!(a.authorized_keys(), "dr-syncer-agent-authorized-keys-prod");
    assert_eq!(a.client_key(), "dr-syncer-mover-key-prod");
    assert_ne!(a.client_key(), b.client_key());
    let long = KeySecrets::for_remote_cluster(&"x".repeat(250));
    assert!(long.host_keys().len() <= 253);
    assert_ne!(
        long.host_keys(),
        KeySecrets::for_remote_cluster(&"x".repeat(251)).host_keys()
    );

    let host = a.generate_host_key().unwrap();
    let client = b.generate_client_key().unwrap();
    assert_ne!(host.public_key().blob(), client.public_key().blob());
    assert_eq!(host.public_key().comment(), "dr-syncer-agent@prod");
    let data = a.host_keys_data(&host);
    assert!(String::from_utf8_lossy(&data["ssh_host_ed25519_key"]).contains("OPENSSH PRIVATE KEY"));
    let pins = HostKeyPins::new(vec![host.public_key()]).unwrap();
    let data = b.client_key_data(&client, &pins);
    let user = UserKeyPair::from_secret_data(&data, "id_ed25519", "id_ed25519.pub").unwrap();
    assert_eq!(user.public, client.public_key());
    assert_eq!(
        HostKeyPins::parse(std::str::from_utf8(&data["known_host_keys"]).unwrap()).unwrap(),
        pins
    );
    let auth = a.authorized_keys_data(&AuthorizedClientKeys::new([client.public_key()]));
    assert_eq!(
        AuthorizedClientKeys::parse(std::str::from_utf8(&auth["authorized_keys"]).unwrap())
            .unwrap()
            .entries()
            .len(),
        1
    );
}
