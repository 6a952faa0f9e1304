use rstest::rstest;

use super::*;

fn roots() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-a/mount"),
        PathBuf::from("/srv/vol-b"),
    ]
}

const A: &str = "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-a/mount";

#[rstest]
// What our mover sends (with and without bandwidth limit, resumable, compression, verification).
#[case("rsync --server --sender -lHogDtpAxSe.iLsfxCIvu --timeout=300 --numeric-ids . /srv/vol-b/", &["-lHogDtpAxSe.iLsfxCIvu", "--timeout=300", "--numeric-ids"], "/srv/vol-b", &["./"])]
#[case("rsync --server --sender -lHogDtpAXrxSe.iLsfxCIvu --timeout=30 --bwlimit=1000 --numeric-ids --inplace . /srv/vol-b/", &["-lHogDtpAXrxSe.iLsfxCIvu", "--timeout=30", "--bwlimit=1000", "--numeric-ids", "--inplace"], "/srv/vol-b", &["./"])]
#[case("rsync --server --sender -nlHogDtpArcxSe.iLsfxCIvu --numeric-ids . /srv/vol-b/", &["-nlHogDtpArcxSe.iLsfxCIvu", "--numeric-ids"], "/srv/vol-b", &["./"])]
#[case("rsync --server --sender -vlogDtprze.iLsfxCIvu --compress-level=3 . /srv/vol-b/", &["-vlogDtprze.iLsfxCIvu", "--compress-level=3"], "/srv/vol-b", &["./"])]
// Plain `rsync -a -e ssh host:path/ dst/`.
#[case("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/", &["-logDtpre.iLsfxCIvu"], "/srv/vol-b", &["./"])]
// Sub-paths of an allowed volume, several at once.
#[case(&format!("rsync --server --sender -logDtpre.iLsfxCIvu -B1024 . {A}/data/ {A}/db/file"), &["-logDtpre.iLsfxCIvu", "-B1024"], A, &["data/", "db/file"])]
fn rsync_senders_inside_allowed_volumes_are_accepted(
    #[case] command: &str,
    #[case] options: &[&str],
    #[case] root: &str,
    #[case] paths: &[&str],
) {
    let req = check(Some(command), &roots()).unwrap_or_else(|r| panic!("{command}: {r}"));
    assert_eq!(
        req,
        Request::Rsync {
            options: options.iter().map(|s| s.to_string()).collect(),
            root: root.into(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    );
}

#[rstest]
#[case("dr-syncer-probe", Request::Probe)]
#[case("dr-syncer-probe /srv/vol-b", Request::ProbePath { root: "/srv/vol-b".into() })]
#[case("dr-syncer-probe /srv/vol-b/", Request::ProbePath { root: "/srv/vol-b".into() })]
#[case("dr-syncer-checksum /srv/vol-b", Request::Checksum { root: "/srv/vol-b".into() })]
#[case("dr-syncer-usage /srv/vol-b", Request::Usage { root: "/srv/vol-b".into() })]
fn probes_and_checksums_are_accepted(#[case] command: &str, #[case] want: Request) {
    assert_eq!(check(Some(command), &roots()), Ok(want));
}

#[rstest]
// Not rsync at all: shells, scp, sftp, anything else.
#[case(None, "interactive")]
#[case(Some(""), "interactive")]
#[case(Some("sh"), "not allowed")]
#[case(Some("/bin/sh -c id"), "not allowed")]
#[case(Some("bash -i"), "not allowed")]
#[case(Some("scp -f /srv/vol-b/x"), "not allowed")]
#[case(Some("scp -t /srv/vol-b/"), "not allowed")]
#[case(Some("internal-sftp"), "not allowed")]
#[case(Some("/usr/lib/openssh/sftp-server"), "not allowed")]
#[case(Some("rsync --server --sender . /srv/vol-b/; id"), "contains ';'")]
#[case(Some("rsync --server --sender . /srv/vol-b/ && id"), "not absolute")]
#[case(Some("rsync --server --sender . $(id)"), "not absolute")]
#[case(Some("/usr/bin/rsync --server --sender . /srv/vol-b/"), "not allowed")]
// The receiver (write), in every spelling.
#[case(Some("rsync --server -logDtpre.iLsfxCIvu . /srv/vol-b/"), "receiver")]
#[case(Some("rsync --server -logDtpre.iLsfxCIvu --sender . /srv/vol-b/"), "receiver")]
#[case(
    Some("rsync --sender --server -logDtpre.iLsfxCIvu . /srv/vol-b/"),
    "--server --sender"
)]
#[case(Some("rsync --daemon"), "--server --sender")]
// Options that read or write server-side files, delete, follow links, or hide arguments.
#[case(Some("rsync --server --sender --log-file=/tmp/x . /srv/vol-b/"), "--log-file")]
#[case(
    Some("rsync --server --sender --log-file-format=%n . /srv/vol-b/"),
    "--log-file-format"
)]
#[case(
    Some("rsync --server --sender --files-from=/etc/shadow . /srv/vol-b/"),
    "--files-from"
)]
#[case(
    Some("rsync --server --sender --files-from=- --from0 . /srv/vol-b/"),
    "--files-from"
)]
#[case(
    Some("rsync --server --sender --exclude-from=/etc/shadow . /srv/vol-b/"),
    "--exclude-from"
)]
#[case(
    Some("rsync --server --sender --include-from=/etc/shadow . /srv/vol-b/"),
    "--include-from"
)]
#[case(Some("rsync --server --sender --temp-dir=/tmp . /srv/vol-b/"), "--temp-dir")]
#[case(Some("rsync --server --sender -T /tmp . /srv/vol-b/"), "-T")]
#[case(Some("rsync --server --sender -lT . /srv/vol-b/"), "-T")]
#[case(
    Some("rsync --server --sender --partial-dir=/tmp . /srv/vol-b/"),
    "--partial-dir"
)]
#[case(
    Some("rsync --server --sender --backup-dir=/tmp . /srv/vol-b/"),
    "--backup-dir"
)]
#[case(Some("rsync --server --sender -b . /srv/vol-b/"), "-b")]
#[case(
    Some("rsync --server --sender --write-batch=/tmp/b . /srv/vol-b/"),
    "--write-batch"
)]
#[case(
    Some("rsync --server --sender --read-batch=/tmp/b . /srv/vol-b/"),
    "--read-batch"
)]
#[case(
    Some("rsync --server --sender --only-write-batch=/tmp/b . /srv/vol-b/"),
    "--only-write-batch"
)]
#[case(
    Some("rsync --server --sender --remove-source-files . /srv/vol-b/"),
    "--remove-source-files"
)]
#[case(
    Some("rsync --server --sender --remove-sent-files . /srv/vol-b/"),
    "--remove-sent-files"
)]
#[case(Some("rsync --server --sender -L . /srv/vol-b/"), "-L")]
#[case(Some("rsync --server --sender --copy-links . /srv/vol-b/"), "--copy-links")]
#[case(Some("rsync --server --sender -logDtprke.iLsfxCIvu . /srv/vol-b/"), "-k")]
#[case(Some("rsync --server --sender -K . /srv/vol-b/"), "-K")]
#[case(
    Some("rsync --server --sender --copy-unsafe-links . /srv/vol-b/"),
    "--copy-unsafe-links"
)]
#[case(
    Some("rsync --server --sender --copy-devices . /srv/vol-b/"),
    "--copy-devices"
)]
#[case(
    Some("rsync --server --sender --insecure-links . /srv/vol-b/"),
    "--insecure-links"
)]
#[case(
    Some("rsync --server --sender --confine-root=/ . /srv/vol-b/"),
    "--confine-root"
)]
#[case(Some("rsync --server --sender -slogDtpre.iLsfxCIvu . /srv/vol-b/"), "-s")]
#[case(
    Some("rsync --server --sender --secluded-args . /srv/vol-b/"),
    "--secluded-args"
)]
#[case(
    Some("rsync --server --sender --protect-args . /srv/vol-b/"),
    "--protect-args"
)]
#[case(Some("rsync --server --sender --debug=FILTER . /srv/vol-b/"), "--debug")]
#[case(Some("rsync --server --sender --rsync-path=sh . /srv/vol-b/"), "--rsync-path")]
#[case(Some("rsync --server --sender --link-dest=/etc . /srv/vol-b/"), "--link-dest")]
#[case(Some("rsync --server --sender -C . /srv/vol-b/"), "-C")]
#[case(Some("rsync --server --sender --timeout=1;id . /srv/vol-b/"), "--timeout")]
#[case(Some("rsync --server --sender --bwlimit=x . /srv/vol-b/"), "--bwlimit")]
#[case(Some("rsync --server --sender -ex . /srv/vol-b/"), "invalid option")]
#[case(Some("rsync --server --sender -e . /srv/vol-b/"), "invalid option")]
#[case(Some("rsync --server --sender extra . /srv/vol-b/"), "unexpected argument")]
#[case(Some("rsync --server --sender -logDtpre.iLsfxCIvu /srv/vol-b/"), "no \".\"")]
#[case(Some("rsync --server --sender -logDtpre.iLsfxCIvu ."), "no path")]
// Paths outside the allowed volumes, and every escape.
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /etc/"),
    "not a volume served"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /"),
    "not a volume served"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/../../etc/"),
    ".. component"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/.."),
    ".. component"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/./x"),
    ". or .. component"
)]
#[case(Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv//vol-b/"), "//")]
#[case(Some("rsync --server --sender -logDtpre.iLsfxCIvu . //srv/vol-b/"), "//")]
#[case(Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b//x"), "//")]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . srv/vol-b/"),
    "not absolute"
)]
#[case(Some("rsync --server --sender -logDtpre.iLsfxCIvu . vol-b"), "not absolute")]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-bb/"),
    "not a volume served"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b*"),
    "contains '*'"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-?/"),
    "contains '?'"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/{vol-b,etc}/"),
    "contains '{'"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/a\\ b"),
    "contains '\\\\'"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b"),
    "trailing slash"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/ /etc/"),
    "not a volume served"
)]
#[case(
    Some(
        "rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/ /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-a/mount/"
    ),
    "same volume"
)]
#[case(
    Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/x\n"),
    "contains '\\n'"
)]
#[case(Some("dr-syncer-probe /etc"), "not a volume served")]
#[case(Some("dr-syncer-probe /srv/vol-b/x"), "inside a volume")]
#[case(Some("dr-syncer-checksum /srv/vol-b/../x"), ".. component")]
#[case(Some("dr-syncer-checksum /etc"), "not a volume served")]
#[case(Some("dr-syncer-checksum"), "not allowed")]
#[case(Some("dr-syncer-usage /etc"), "not a volume served")]
#[case(Some("dr-syncer-usage /srv/vol-b/sub"), "inside a volume")]
fn everything_else_is_refused(#[case] command: Option<&str>, #[case] reason: &str) {
    let refusal = check(command, &roots()).expect_err(&format!("{command:?} must be refused"));
    assert!(
        refusal.0.contains(reason),
        "{command:?}: refusal {:?} should mention {reason:?}",
        refusal.0
    );
}

#[test]
fn nothing_is_served_without_allowed_volumes() {
    let refusal = check(
        Some("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/vol-b/"),
        &[],
    )
    .unwrap_err();
    assert!(refusal.0.contains("not a volume served"));
    assert_eq!(check(Some("dr-syncer-probe"), &[]), Ok(Request::Probe));
}
