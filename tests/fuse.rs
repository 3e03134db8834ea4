//! End-to-end tests on real FUSE mounts of tidefs.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn file_operations() {
    let v = Volume::format("e2e-ops", &["--trash-days", "0"]);
    let m = v.mount("a", &[]);
    let data = bytes(1, 9 << 20 | 12345);
    fs::write(m.p("big"), &data).expect("write big");
    assert_eq!(fs::read(m.p("big")).expect("read big"), data);
    fs::write(m.p("small"), b"hello").expect("small");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.p("small"))
        .expect("append");
    f.write_all(b" world").expect("append");
    drop(f);
    assert_eq!(fs::read(m.p("small")).expect("read"), b"hello world");
    fs::create_dir_all(m.p("d/e/f")).expect("mkdir -p");
    fs::rename(m.p("small"), m.p("d/e/moved")).expect("rename");
    assert!(!m.p("small").exists());
    std::os::unix::fs::symlink("e/moved", m.p("d/link")).expect("symlink");
    assert_eq!(
        fs::read(m.p("d/link")).expect("through symlink"),
        b"hello world"
    );
    fs::hard_link(m.p("d/e/moved"), m.p("hard")).expect("link");
    assert_eq!(fs::metadata(m.p("hard")).expect("stat").nlink(), 2);
    assert_eq!(fs::metadata(m.p("d")).expect("stat").nlink(), 3);
    let mut names: Vec<_> = fs::read_dir(m.p("d"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec!["e", "link"]);
    // truncate, sparse writes, holes
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.p("big"))
        .expect("open");
    f.set_len(100).expect("shrink");
    f.set_len(5000).expect("grow");
    drop(f);
    let got = fs::read(m.p("big")).expect("read");
    assert_eq!(&got[..100], &data[..100]);
    assert!(
        got[100..].iter().all(|b| *b == 0),
        "grown tail reads as zeros"
    );
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("big"))
        .expect("open");
    f.seek(SeekFrom::Start(100 << 20)).expect("seek");
    f.write_all(b"far").expect("far write");
    f.sync_all().expect("fsync");
    assert_eq!(f.metadata().expect("stat").len(), (100 << 20) + 3);
    let mut buf = [1u8; 10];
    f.seek(SeekFrom::Start(50 << 20)).expect("seek");
    f.read_exact(&mut buf).expect("read hole");
    assert_eq!(buf, [0u8; 10]);
    drop(f);
    // names over 255 bytes
    let long = "n".repeat(256);
    let e = fs::write(m.p(&long), b"x").expect_err("too long");
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    fs::remove_dir(m.p("d/e/f")).expect("rmdir");
    assert_eq!(
        fs::remove_dir(m.p("d"))
            .expect_err("not empty")
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    let st = sh(&format!("stat -f -c '%l' {}", m.path.display()));
    assert_eq!(st.trim(), "255");
    m.unmount();
    v.fsck();
}

#[test]
fn two_handles_and_two_mounts_see_each_other() {
    let v = Volume::format("e2e-two", &[]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &NO_KERNEL_CACHE);
    let mut w = fs::File::create(a.p("shared")).expect("create");
    let mut r = fs::File::open(a.p("shared")).expect("open second handle");
    w.write_all(b"first").expect("write");
    let mut got = String::new();
    r.read_to_string(&mut got).expect("read other handle");
    assert_eq!(
        got, "first",
        "a second handle in the same mount sees buffered writes"
    );
    w.write_all(b" second").expect("write");
    drop(w);
    // close-to-open across mounts
    assert_eq!(
        fs::read(b.p("shared")).expect("other mount"),
        b"first second"
    );
    fs::rename(b.p("shared"), b.p("renamed")).expect("rename on b");
    assert_eq!(
        fs::read(a.p("renamed")).expect("seen on a"),
        b"first second"
    );
}

#[test]
fn permissions_as_unprivileged_user() {
    let v = Volume::format("e2e-perm", &[]);
    let m = v.mount("a", &[]);
    fs::create_dir(m.p("rootonly")).expect("mkdir");
    fs::set_permissions(m.p("rootonly"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(m.p("open")).expect("mkdir");
    fs::set_permissions(m.p("open"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::write(m.p("open/rootfile"), b"r").expect("root file");
    let out = as_nobody(&format!("touch {}/rootonly/x", m.path.display()));
    assert!(
        !out.status.success(),
        "nobody may not write into a 0755 root directory"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    let out = as_nobody(&format!(
        "echo hi > {0}/open/mine && cat {0}/open/mine && chmod 600 {0}/open/mine",
        m.path.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = fs::metadata(m.p("open/mine")).expect("stat");
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (65534, 65534, 0o600)
    );
    let out = as_nobody(&format!("rm -f {}/open/rootfile", m.path.display()));
    assert!(!out.status.success(), "sticky bit protects root's file");
    let out = as_nobody(&format!("chown root {}/open/mine", m.path.display()));
    assert!(!out.status.success(), "nobody cannot give files away");
    // root reads a 0600 file of another user; nobody cannot read root's 0600 file
    fs::write(m.p("secret"), b"s").expect("secret");
    fs::set_permissions(m.p("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(!as_nobody(&format!("cat {}/secret", m.path.display()))
        .status
        .success());
}

#[test]
fn trash_keeps_true_link_counts() {
    let v = Volume::format("e2e-trash", &["--trash-days", "1"]);
    let m = v.mount("a", &[]);
    fs::write(m.p("a"), b"data").expect("write");
    fs::hard_link(m.p("a"), m.p("b")).expect("link");
    fs::remove_file(m.p("a")).expect("unlink");
    assert_eq!(
        fs::metadata(m.p("b")).expect("stat").nlink(),
        1,
        "st_nlink must not count a trash link"
    );
    fs::remove_file(m.p("b")).expect("unlink");
    let hours: Vec<_> = fs::read_dir(m.p(".trash")).expect("trash").collect();
    assert_eq!(hours.len(), 1);
    let hour = hours
        .into_iter()
        .next()
        .expect("hour")
        .expect("entry")
        .path();
    let inside: Vec<_> = fs::read_dir(&hour)
        .expect("hour dir")
        .map(|e| e.expect("e").path())
        .collect();
    assert_eq!(inside.len(), 1);
    assert_eq!(fs::read(&inside[0]).expect("restore by reading"), b"data");
    // replaced by rename: the old file goes to the trash too
    fs::write(m.p("x"), b"old").expect("x");
    fs::write(m.p("y"), b"new").expect("y");
    fs::rename(m.p("y"), m.p("x")).expect("rename over");
    let count = fs::read_dir(&hour).expect("hour").count();
    assert_eq!(count, 2);
    m.unmount();
    v.fsck();
    v.juicefs_fsck();
}

#[test]
fn unlinked_open_file_keeps_data_until_close() {
    let v = Volume::format("e2e-orphan", &["--trash-days", "0"]);
    let m = v.mount("a", &[]);
    let data = bytes(4, 3 << 20);
    fs::write(m.p("f"), &data).expect("write");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("f"))
        .expect("open");
    fs::remove_file(m.p("f")).expect("unlink while open");
    assert!(!m.p("f").exists());
    let mut got = Vec::new();
    f.read_to_end(&mut got).expect("read unlinked");
    assert_eq!(got, data);
    f.write_all(b"more").expect("write unlinked");
    f.sync_all().expect("fsync unlinked");
    drop(f);
    // the kernel sends RELEASE after close(2) returns: give it a moment, bounded
    let count = || {
        let chunks = sh(&format!(
            "sqlite3 {}/meta.db 'select count(*) from jfs_chunk'",
            v.dir.path().display()
        ));
        (chunks.trim().to_string(), v.object_count())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count() != ("0".into(), "0".into()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        count(),
        ("0".into(), "0".into()),
        "chunks and objects freed after the last close"
    );
}

#[test]
fn read_only_and_subdir_mounts() {
    let v = Volume::format("e2e-ro", &[]);
    let m = v.mount("rw", &[]);
    fs::create_dir_all(m.p("sub/inner")).expect("mkdir");
    fs::write(m.p("sub/inner/f"), b"inside").expect("write");
    m.unmount();
    let ro = v.mount("ro", &["--read-only"]);
    assert_eq!(fs::read(ro.p("sub/inner/f")).expect("read"), b"inside");
    let e = fs::write(ro.p("new"), b"x").expect_err("read-only");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    ro.unmount();
    let sub = v.mount("sub", &["--subdir", "sub"]);
    assert_eq!(fs::read(sub.p("inner/f")).expect("read"), b"inside");
    fs::write(sub.p("inner/g"), b"g").expect("write in subdir");
    sub.unmount();
    let m = v.mount("rw2", &[]);
    assert_eq!(fs::read(m.p("sub/inner/g")).expect("read"), b"g");
}

#[test]
fn locks_exclude_within_a_mount() {
    let v = Volume::format("e2e-lock", &[]);
    let m = v.mount("a", &[]);
    fs::write(m.p("lockfile"), b"").expect("create");
    let p = m.p("lockfile");
    let out = sh(&format!(
        "flock -x {0} -c 'flock -n -x {0} -c true && echo got || echo busy'",
        p.display()
    ));
    assert_eq!(out.trim(), "busy", "flock excludes a second holder");
    let py = format!(
        "import fcntl,os\nf=open('{0}','r+')\nfcntl.lockf(f, fcntl.LOCK_EX)\npid=os.fork()\nif pid==0:\n  g=open('{0}','r+')\n  try:\n    fcntl.lockf(g, fcntl.LOCK_EX|fcntl.LOCK_NB); print('got')\n  except OSError: print('busy')\n  os._exit(0)\nos.waitpid(pid,0)\n",
        p.display()
    );
    assert_eq!(
        ok("python3", &["-c", &py]).trim(),
        "busy",
        "POSIX record locks exclude another process"
    );
}

/// A process waiting for a lock that gets a signal is interrupted (EINTR, its handler runs), and
/// one killed while it waits exits at once, without taking the lock later: the kernel's
/// interrupt reaches the waiting request (fuser as shipped answers interrupts with ENOSYS, after
/// which the kernel sends none, and a killed waiter hung in `D` state for good).
#[test]
fn lock_waits_are_interrupted_by_signals_and_killed_waiters_exit() {
    let v = Volume::format("e2e-lockintr", &[]);
    let m = v.mount("a", &[]);
    fs::write(m.p("lockfile"), b"").expect("create");
    let script = r#"
import fcntl, os, signal, sys, time
p, kind = sys.argv[1], sys.argv[2]
def take(f, nb=False):
    if kind == 'posix':
        fcntl.lockf(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if nb else 0))
    else:
        fcntl.flock(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if nb else 0))
def wait_exit(pid, secs):
    end = time.time() + secs
    while time.time() < end:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return status
        time.sleep(0.05)
    return None
held = open(p, 'r+')
take(held)
# 1: a waiter whose signal handler raises sees the wait end
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    def alarm(*_):
        raise TimeoutError()
    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        take(open(p, 'r+'))
        os.write(w, b'got')
    except TimeoutError:
        os.write(w, b'interrupted')
    os._exit(0)
st = wait_exit(pid, 10)
os.close(w)
print('signal:', os.read(r, 100).decode() if st is not None else 'stuck')
# 2: a waiter killed with SIGKILL exits
pid = os.fork()
if pid == 0:
    take(open(p, 'r+'))
    os._exit(0)
time.sleep(0.5)
os.kill(pid, signal.SIGKILL)
print('kill:', 'exited' if wait_exit(pid, 10) is not None else 'stuck')
# nobody took the lock on behalf of the dead: once released, a new process gets it at once
held.close()
time.sleep(0.3)
pid = os.fork()
if pid == 0:
    try:
        take(open(p, 'r+'), nb=True)
        os._exit(0)
    except OSError:
        os._exit(1)
st = wait_exit(pid, 10)
print('after:', 'free' if st == 0 else 'held')
"#;
    let p = m.p("lockfile");
    for kind in ["posix", "flock"] {
        let out = ok(
            "timeout",
            &["60", "python3", "-c", script, &p.to_string_lossy(), kind],
        );
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec!["signal: interrupted", "kill: exited", "after: free"],
            "{kind}"
        );
    }
}

/// Two processes of one mount each holding a byte the other waits for: the one whose wait
/// would close the cycle gets EDEADLK at once (as local file systems answer), the other gets
/// its lock when the first lets go. (juicefs, like tidefs before, left both waiting for good.)
#[test]
fn a_posix_lock_wait_that_would_deadlock_fails_with_edeadlk() {
    let v = Volume::format("e2e-deadlk", &[]);
    let m = v.mount("a", &[]);
    fs::write(m.p("f"), b"ab").expect("create");
    let script = r#"
import errno, fcntl, os, sys, time
p = sys.argv[1]
f = open(p, 'r+')
fcntl.lockf(f, fcntl.LOCK_EX, 1, 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    g = open(p, 'r+')
    fcntl.lockf(g, fcntl.LOCK_EX, 1, 1)
    os.write(w, b'1')
    try:
        fcntl.lockf(g, fcntl.LOCK_EX, 1, 0)
        os._exit(0)
    except OSError as e:
        os._exit(1)
os.read(r, 1)
time.sleep(0.5)
try:
    fcntl.lockf(f, fcntl.LOCK_EX, 1, 1)
    print('parent: got it')
except OSError as e:
    print('parent:', 'EDEADLK' if e.errno == errno.EDEADLK else e)
f.close()
_, st = os.waitpid(pid, 0)
print('child:', os.WEXITSTATUS(st))
"#;
    let out = ok(
        "timeout",
        &["30", "python3", "-c", script, &m.p("f").to_string_lossy()],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["parent: EDEADLK", "child: 0"]
    );
}

/// The kernel drops a file's capabilities when it is written, reading `security.capability`
/// before each write; the mount remembers "none" for the attribute TTL so a stream of small
/// writes is not a metadata read each, and forgets it when the attribute is set: capabilities
/// set through this mount are dropped by the next write, those set through another mount by a
/// write after the TTL.
#[test]
fn writes_drop_file_capabilities_set_here_or_elsewhere() {
    let v = Volume::format("e2e-caps", &[]);
    let a = v.mount("a", &[]);
    let b = v.mount("b", &[]);
    fs::write(a.p("prog"), b"#!/bin/sh\n").expect("write");
    let script = r#"
import os, struct, sys, time
pa, pb = sys.argv[1], sys.argv[2]
CAP = 'security.capability'
# revision 2, effective, CAP_NET_RAW permitted
blob = struct.pack('<5I', 0x02000001, 1 << 13, 0, 0, 0)
def caps(p):
    try:
        return os.getxattr(p, CAP)
    except OSError as e:
        if e.errno == 61:
            return None
        raise
def write_one(p):
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b'#')
    os.close(fd)
assert caps(pa) is None
write_one(pa)
os.setxattr(pa, CAP, blob)
print('set here:', caps(pa) == blob)
write_one(pa)
print('after write:', caps(pa))
write_one(pa)
os.setxattr(pb, CAP, blob)
time.sleep(1.5)
write_one(pa)
print('set elsewhere, after write:', caps(pb))
# a descriptor kept open: its writes refresh no attributes, so this kernel has no reason to
# look for capabilities again; the mount drops them
fd = os.open(pa, os.O_WRONLY | os.O_APPEND)
os.write(fd, b'#')
os.setxattr(pb, CAP, blob)
time.sleep(1.5)
os.write(fd, b'#')
print('set elsewhere, after a write through an open descriptor:', caps(pb))
os.close(fd)
"#;
    let out = ok(
        "python3",
        &[
            "-c",
            script,
            &a.p("prog").to_string_lossy(),
            &b.p("prog").to_string_lossy(),
        ],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "set here: True",
            "after write: None",
            "set elsewhere, after write: None",
            "set elsewhere, after a write through an open descriptor: None"
        ]
    );
}

/// Modifying a file drops its privileges the way a local file system does: the mount
/// negotiates FUSE_HANDLE_KILLPRIV_V2, so the kernel no longer does it for us. The same script
/// runs in a local directory (the oracle) and on the mount, and every line must match: writes,
/// truncates, fallocate and copy_file_range by an unprivileged user clear set-user-id and
/// group-executable set-group-id (set-group-id without group execute stays), root's keep
/// them, chown clears them, and capabilities go on every write, truncate and chown, also after
/// earlier writes found nothing to drop.
#[test]
fn modifying_a_file_drops_set_id_bits_and_capabilities_as_a_local_file_system_does() {
    let v = Volume::format("e2e-killpriv", &[]);
    let m = v.mount("a", &[]);
    let local = v.dir.path().join("local");
    fs::create_dir(&local).expect("local dir");
    let script = r#"
import os, struct, sys
d = sys.argv[1]
os.chmod(d, 0o777)
CAP = 'security.capability'
blob = struct.pack('<5I', 0x02000001, 1 << 13, 0, 0, 0)
def as_nobody(f):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            f()
            os._exit(0)
        except BaseException as e:
            print('child failed:', e, flush=True)
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    assert st == 0, st
def mk(name, mode, data=b'0123456789'):
    p = os.path.join(d, name)
    with open(p, 'wb') as f:
        f.write(data)
    os.chown(p, 65534, 65534)
    os.chmod(p, mode)
    return p
def write(p):
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b'x', 3)
    os.close(fd)
def trunc(p):
    fd = os.open(p, os.O_WRONLY)
    os.ftruncate(fd, 5)
    os.close(fd)
def falloc(p):
    fd = os.open(p, os.O_WRONLY)
    os.posix_fallocate(fd, 0, 8192)
    os.close(fd)
def copy_into(p):
    src = os.path.join(d, 'src')
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(p, os.O_WRONLY)
    os.copy_file_range(fi, fo, 4, 0, 0)
    os.close(fi); os.close(fo)
def caps(p):
    try:
        os.getxattr(p, CAP)
        return 'caps'
    except OSError as e:
        if e.errno == 61:
            return 'none'
        raise
def show(what, p):
    print(what, oct(os.stat(p).st_mode & 0o7777), flush=True)
with open(os.path.join(d, 'src'), 'wb') as f:
    f.write(b'abcd')
os.chmod(os.path.join(d, 'src'), 0o644)
for mode in (0o4755, 0o2755, 0o2745, 0o6755, 0o6711):
    for name, op in (('write', write), ('truncate', trunc), ('fallocate', falloc), ('copy', copy_into)):
        p = mk('%s-%o' % (name, mode), mode)
        as_nobody(lambda: op(p))
        show('nobody %s %o ->' % (name, mode), p)
        p = mk('root-%s-%o' % (name, mode), mode)
        op(p)
        show('root %s %o ->' % (name, mode), p)
for mode in (0o4755, 0o2755, 0o2745, 0o6755):
    p = mk('chown-same-%o' % mode, mode)
    os.chown(p, 65534, -1)
    show('chown to the same owner %o ->' % mode, p)
    p = mk('chown-other-%o' % mode, mode)
    os.chown(p, 0, 0)
    show('chown to another owner %o ->' % mode, p)
# after writes that found nothing to drop, set-user-id set again is still dropped
p = mk('again', 0o755)
for _ in range(3):
    as_nobody(lambda: write(p))
os.chmod(p, 0o4755)
as_nobody(lambda: write(p))
show('set again after writes ->', p)
# capabilities: set, then each kind of modification by root drops them
def chown_root(p):
    os.chown(p, 0, 0)
for name, op in (('write', write), ('truncate', trunc), ('chown', chown_root)):
    p = mk('caps-' + name, 0o755)
    write(p)
    os.setxattr(p, CAP, blob)
    print('caps set before %s:' % name, caps(p))
    op(p)
    print('caps after root %s:' % name, caps(p))
    os.setxattr(p, CAP, blob)
    write(p)
    print('caps set again, after another write:', caps(p))
"#;
    let oracle = ok("python3", &["-c", script, &local.to_string_lossy()]);
    let got = ok("python3", &["-c", script, &m.path.to_string_lossy()]);
    assert!(
        oracle.contains("nobody write 4755 -> 0o755"),
        "the oracle ran: {oracle}"
    );
    let (want, have): (Vec<_>, Vec<_>) = (oracle.lines().collect(), got.lines().collect());
    assert_eq!(
        have, want,
        "tidefs (left) against the local file system (right)"
    );
}

/// Files may be 128 PiB long (2^31 chunks, as juicefs allows); past that writes, truncates and
/// fallocates are EFBIG, and shrinking a file of that length costs no more than its data
/// (stress-ng's fsize stressor grew the mount past 23 GB doing this, until the OOM killer
/// ended it).
#[test]
fn the_largest_file_length_is_128_pib_and_shrinking_from_it_is_cheap() {
    let v = Volume::format("e2e-fsize", &[]);
    let m = v.mount("a", &[]);
    let script = r#"
import errno, os, sys
p = sys.argv[1]
top = 1 << 57
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
def efbig(f):
    try:
        f()
        return 'ok'
    except OSError as e:
        return 'EFBIG' if e.errno == errno.EFBIG else str(e)
os.pwrite(fd, b'head', 0)
os.ftruncate(fd, top)
print('truncate to the largest:', os.fstat(fd).st_size == top)
print('truncate past it:', efbig(lambda: os.ftruncate(fd, top + 1)))
os.pwrite(fd, b'z', top - 1)
print('write past it:', efbig(lambda: os.pwrite(fd, b'x', top)))
print('fallocate past it:', efbig(lambda: os.posix_fallocate(fd, top - 10, 20)))
os.fsync(fd)
os.ftruncate(fd, 2)
print('shrunk:', os.fstat(fd).st_size, os.pread(fd, 10, 0))
os.close(fd)
"#;
    let out = ok(
        "timeout",
        &["60", "python3", "-c", script, &m.p("f").to_string_lossy()],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "truncate to the largest: True",
            "truncate past it: EFBIG",
            "write past it: EFBIG",
            "fallocate past it: EFBIG",
            "shrunk: 2 b'he'",
        ]
    );
    m.unmount();
    assert!(
        v.fsck_stats().contains(" 0 problem(s)"),
        "fsck after the largest file"
    );
    v.juicefs_fsck();
}

#[test]
fn xattrs_and_special_files() {
    let v = Volume::format("e2e-xattr", &[]);
    let m = v.mount("a", &[]);
    fs::write(m.p("f"), b"x").expect("write");
    let py = format!(
        "import os\np='{0}'\nos.setxattr(p,'user.k',b'v1')\nassert os.getxattr(p,'user.k')==b'v1'\nassert os.listxattr(p)==['user.k']\ntry:\n  os.getxattr(p,'user.none'); raise SystemExit('no ENODATA')\nexcept OSError as e:\n  assert e.errno==61, e\ntry:\n  os.setxattr(p,'user.k',b'v2',os.XATTR_CREATE); raise SystemExit('no EEXIST')\nexcept OSError as e:\n  assert e.errno==17, e\nos.removexattr(p,'user.k')\nos.mkfifo('{1}')\nos.mknod('{2}', 0o600|0o020000, os.makedev(1,3))\nimport socket\ns=socket.socket(socket.AF_UNIX); s.bind('{3}')\nprint('ok')\n",
        m.p("f").display(),
        m.p("fifo").display(),
        m.p("chardev").display(),
        m.p("sock").display()
    );
    assert_eq!(ok("python3", &["-c", &py]).trim(), "ok");
    let kinds = sh(&format!(
        "stat -c '%F' {0}/fifo {0}/chardev {0}/sock",
        m.path.display()
    ));
    assert_eq!(
        kinds.lines().collect::<Vec<_>>(),
        vec!["fifo", "character special file", "socket"]
    );
    let rdev = sh(&format!("stat -c '%t:%T' {}/chardev", m.path.display()));
    assert_eq!(rdev.trim(), "1:3");
}

#[test]
fn fallocate_and_copy_file_range() {
    let v = Volume::format("e2e-falloc", &[]);
    let m = v.mount("a", &[]);
    let data = bytes(9, 1 << 20);
    fs::write(m.p("f"), &data).expect("write");
    sh(&format!(
        "fallocate -p -o 4096 -l 8192 {}",
        m.p("f").display()
    ));
    let got = fs::read(m.p("f")).expect("read");
    assert_eq!(got.len(), 1 << 20);
    assert!(
        got[4096..12288].iter().all(|b| *b == 0),
        "punched range reads as zeros"
    );
    assert_eq!(&got[..4096], &data[..4096]);
    assert_eq!(&got[12288..], &data[12288..]);
    sh(&format!("fallocate -l 3000000 {}", m.p("g").display()));
    assert_eq!(fs::metadata(m.p("g")).expect("stat").len(), 3_000_000);
    sh(&format!("fallocate -z -o 0 -l 100 {}", m.p("f").display()));
    assert!(fs::read(m.p("f")).expect("read")[..100]
        .iter()
        .all(|b| *b == 0));
    // cp uses copy_file_range on Linux
    sh(&format!(
        "cp {} {}",
        m.p("f").display(),
        m.p("copy").display()
    ));
    assert_eq!(
        fs::read(m.p("copy")).expect("copy"),
        fs::read(m.p("f")).expect("f")
    );
}

fn count(db: &str, sql: &str) -> String {
    sh(&format!("sqlite3 {db} '{sql}'")).trim().to_string()
}

#[test]
fn files_of_a_dead_client_are_freed() {
    let v = Volume::format("e2e-dead", &["--trash-days", "0"]);
    let db = format!("{}/meta.db", v.dir.path().display());
    let m = v.mount("a", &[]);
    fs::write(m.p("open"), bytes(1, 1 << 20)).expect("write");
    let f = fs::File::open(m.p("open")).expect("open");
    fs::remove_file(m.p("open")).expect("unlink while open");
    assert_eq!(count(&db, "select count(*) from jfs_sustained"), "1");
    ok("kill", &["-9", &m.pid().to_string()]);
    drop(f);
    drop(m);
    // the session would expire 60 s after its last heartbeat; age it instead of waiting
    sh(&format!(
        "sqlite3 {db} 'UPDATE jfs_session2 SET expire = 0'"
    ));
    let out = ok(tidefs(), &["fsck", &v.url, "--repair"]);
    assert!(out.contains("cleanup: removed 1 "), "{out}");
    assert_eq!(count(&db, "select count(*) from jfs_chunk"), "0");
    assert_eq!(count(&db, "select count(*) from jfs_session2"), "0");
    assert_eq!(
        v.object_count(),
        "0",
        "objects of the freed file are deleted"
    );
    v.juicefs_fsck();
}

#[test]
fn expired_trash_is_purged() {
    let v = Volume::format("e2e-purge", &["--trash-days", "1"]);
    let db = format!("{}/meta.db", v.dir.path().display());
    let m = v.mount("a", &[]);
    fs::write(m.p("old"), bytes(2, 1 << 20)).expect("write");
    fs::remove_file(m.p("old")).expect("to trash");
    m.unmount();
    let out = ok(tidefs(), &["fsck", &v.url, "--repair"]);
    assert!(
        out.contains("cleanup: removed 0 "),
        "a fresh trash entry stays: {out}"
    );
    // make the trash hour two days old instead of waiting
    sh(&format!(
        "sqlite3 {db} \"UPDATE jfs_edge SET name = CAST('2000-01-01-00' AS BLOB) WHERE parent = {}\"",
        0x7FFF_FFFF_1000_0000u64
    ));
    let out = ok(tidefs(), &["fsck", &v.url, "--repair"]);
    assert!(out.contains("cleanup: removed 1 "), "{out}");
    assert_eq!(count(&db, "select count(*) from jfs_chunk"), "0");
    assert_eq!(
        count(
            &db,
            "select count(*) from jfs_edge where parent > 9223372032828243968"
        ),
        "0"
    );
    v.juicefs_fsck();
}

#[test]
fn rename_exchange_and_noreplace_through_the_kernel() {
    let v = Volume::format("e2e-rename2", &[]);
    let m = v.mount("a", &[]);
    fs::write(m.p("a"), b"A").expect("a");
    fs::create_dir(m.p("d")).expect("d");
    let py = format!(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nAT=-100\ndef r2(a, b, f):\n  rc = libc.renameat2(AT, a.encode(), AT, b.encode(), f)\n  return 0 if rc == 0 else ctypes.get_errno()\nprint(r2('{0}/a', '{0}/d', 1), r2('{0}/a', '{0}/d', 2), os.path.isdir('{0}/a'), open('{0}/d').read())\n",
        m.path.display()
    );
    assert_eq!(
        ok("python3", &["-c", &py]).trim(),
        "17 0 True A",
        "NOREPLACE gives EEXIST, EXCHANGE swaps"
    );
    let e = fs::rename(m.p("a"), m.p("a/inside")).expect_err("into itself");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn concurrent_random_operations_keep_the_volume_consistent() {
    let v = Volume::format("e2e-stress", &[]);
    let m = v.mount("a", &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stress.py");
    let children: Vec<_> = (10..14)
        .map(|seed| {
            std::process::Command::new("python3")
                .args([script, &m.path.to_string_lossy(), &seed.to_string(), "6"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("stress process")
        })
        .collect();
    let mut total = 0u64;
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "stress process failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default().to_string();
        let v: serde_json::Value = serde_json::from_str(&last).expect("stress output");
        total += v["ops"].as_u64().unwrap_or(0);
        for (errno, _) in v["errors"].as_object().expect("errors").iter() {
            // names collide on purpose: only "not there", "already there", "not empty" may occur
            assert!(
                ["2", "17", "39"].contains(&errno.as_str()),
                "unexpected errno {errno}: {last}"
            );
        }
    }
    assert!(total > 1000, "too few operations ran: {total}");
    m.unmount();
    v.fsck();
    v.juicefs_fsck();
}

#[test]
fn full_bucket_reports_enospc_and_loses_nothing() {
    let v = Volume::new_unformatted("e2e-full");
    let bucket = v.bucket.to_string_lossy().into_owned();
    ok(
        "mount",
        &["-t", "tmpfs", "-o", "size=16m", "tmpfs", &bucket],
    );
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = run("umount", &["-l", &self.0]);
        }
    }
    let _bucket = Unmount(bucket.clone());
    ok(
        tidefs(),
        &[
            "format",
            &v.url,
            "e2e-full",
            "--bucket",
            &bucket,
            "--trash-days",
            "0",
        ],
    );
    let m = v.mount("a", &[]);
    fs::write(m.p("keep"), b"kept").expect("small write fits");
    let py = format!(
        "import os\nfd=os.open('{}', os.O_CREAT|os.O_WRONLY, 0o644)\nb=os.urandom(1<<20)\nfor i in range(40): os.write(fd, b)\ntry:\n  os.fsync(fd); print('fsync ok')\nexcept OSError as e: print('fsync errno', e.errno)\nos.close(fd)\n",
        m.p("big").display()
    );
    assert_eq!(
        ok("python3", &["-c", &py]).trim(),
        "fsync errno 28",
        "a full store is ENOSPC at fsync"
    );
    // what the failed file had uploaded is given back, and no partial object stays behind
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let used = || {
        sh(&format!("du -sk {bucket} | cut -f1"))
            .trim()
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    };
    while used() > 1024 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(used() <= 1024, "bucket still holds {} KiB", used());
    assert_eq!(
        sh(&format!("find {bucket} -name '*.tmp.*' | wc -l")).trim(),
        "0"
    );
    fs::write(m.p("after"), b"later writes work").expect("write after ENOSPC");
    assert_eq!(fs::read(m.p("keep")).expect("old data"), b"kept");
    m.unmount();
    v.fsck();
    v.juicefs_fsck();
}

#[test]
fn unlink_and_replacing_rename_free_objects_in_the_background() {
    let v = Volume::format("e2e-unlink-free", &["--trash-days", "0"]);
    let m = v.mount("a", &[]);
    let objects = || v.object_count();
    fs::write(m.p("big"), bytes(7, 9 << 20)).expect("write 9 MiB");
    fs::write(m.p("small"), bytes(8, 1000)).expect("write small");
    fs::write(m.p("new"), bytes(9, 1000)).expect("write new");
    assert_eq!(objects(), "5", "4 + 4 + 1 MiB blocks and two small files");
    fs::remove_file(m.p("big")).expect("unlink");
    fs::rename(m.p("new"), m.p("small")).expect("rename over a file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while objects() != "1" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(objects(), "1", "only the renamed file's object is left");
    assert_eq!(fs::read(m.p("small")).expect("read"), bytes(9, 1000));
    drop(m);
    v.juicefs_fsck();
}

/// A listing long enough to cross several directory pages (which grow and are read ahead in the
/// background): every name exactly once with its attributes, and a listing that goes on while
/// entries are removed and added repeats nothing and loses no entry that stayed.
#[test]
fn long_listings_cross_pages_without_repeats_or_losses() {
    use std::collections::{BTreeSet, HashMap};
    let v = Volume::format("e2e-long-list", &["--trash-days", "0"]);
    let m = v.mount("a", &[]);
    fs::create_dir(m.p("big")).expect("mkdir");
    let n = 6000usize;
    let name = |i: usize| format!("f{i:05}");
    for i in 0..n {
        // sizes tell the entries apart in the listing's attributes
        fs::write(m.p(&format!("big/{}", name(i))), vec![b'x'; i % 97]).expect("create");
    }
    let listed: Vec<(String, u64)> = fs::read_dir(m.p("big"))
        .expect("readdir")
        .map(|e| {
            let e = e.expect("entry");
            let len = e.metadata().expect("stat").len();
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    assert_eq!(listed.len(), n, "every entry once");
    let sizes: HashMap<String, u64> = listed.into_iter().collect();
    for i in 0..n {
        assert_eq!(sizes.get(&name(i)), Some(&((i % 97) as u64)), "{}", name(i));
    }

    // remove and add entries in the middle of a listing
    let mut it = fs::read_dir(m.p("big")).expect("readdir");
    let mut seen = Vec::new();
    for e in it.by_ref().take(1000) {
        seen.push(e.expect("entry").file_name().to_string_lossy().into_owned());
    }
    let removed: BTreeSet<String> = (0..n).step_by(3).map(name).collect();
    for r in &removed {
        fs::remove_file(m.p(&format!("big/{r}"))).expect("unlink");
    }
    for i in 0..200 {
        fs::write(m.p(&format!("big/new{i:03}")), b"").expect("create new");
    }
    for e in it {
        seen.push(e.expect("entry").file_name().to_string_lossy().into_owned());
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no name repeated in one listing");
    for i in 0..n {
        let nm = name(i);
        if !removed.contains(&nm) {
            assert!(unique.contains(&nm), "{nm} stayed but was not listed");
        }
    }
    // a fresh listing is exact
    let now: BTreeSet<String> = fs::read_dir(m.p("big"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(now.len(), n - removed.len() + 200);
    assert!(now.iter().all(|x| !removed.contains(x)));
    drop(m);
    v.fsck();
}
