//! S3 over TLS and through HTTP proxies: the test RGW behind a TLS front (a small Python relay
//! with a certificate of a CA made here), so the HTTPS path of tidefs's HTTP transport runs for
//! real: certificate checks against the platform's roots (`SSL_CERT_FILE` names the test CA, as
//! an operator with a private CA would), the TLS layer over the quick-ACK TCP connections, data
//! round trips; then the same through a forwarding proxy (Python, CONNECT for https, absolute
//! form for http) named by `HTTPS_PROXY` / `HTTP_PROXY`. A file of its own: the environment it
//! sets applies to the whole test process.
#![cfg(tidefs_test_s3)]

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Python shared by the two helpers below: copy one socket into another until it ends.
const PIPE: &str = r#"
import socket
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except Exception:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except Exception:
            pass
"#;

/// Relays TLS connections on a free port of 127.0.0.1 to the plain-HTTP server at argv[1]
/// (host:port); prints the port, then serves until killed.
const RELAY: &str = r#"
import socket, ssl, sys, threading
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except Exception:
        return
    u = socket.create_connection((host, int(port)))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// An HTTP proxy on a free port of 127.0.0.1: `CONNECT host:port` tunnels, requests in
/// absolute form are forwarded as they are. Writes "METHOD TARGET auth=True|False" for the
/// first request of each connection to the file argv[1]; prints the port.
const PROXY: &str = r#"
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def serve(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    method, target = head.split(b"\r\n")[0].decode().split(" ")[:2]
    auth = b"proxy-authorization: basic " in head.lower()
    log.write(f"{method} {target} auth={auth}\n")
    if method == "CONNECT":
        host, port = target.rsplit(":", 1)
        u = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            u.sendall(rest)
    else:
        host, port = target.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
        u = socket.create_connection((host, int(port)))
        u.sendall(buf)
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `python3 -c PIPE+code args...`; it prints the port it listens on.
fn start_python(code: &str, args: &[&std::ffi::OsStr]) -> (Relay, String) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!("{PIPE}{code}"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    (Relay(child), line.trim().to_string())
}

/// Write `files` into a fresh mount of `v`, then read them back in another one.
fn round_trip(v: &Volume, tag: &str, files: &[(String, Vec<u8>)]) {
    {
        let m = v.mount(&format!("{tag}w"), &[]);
        for (name, d) in files {
            fs::write(m.p(name), d).expect("write");
        }
    }
    let m = v.mount(&format!("{tag}r"), &["--cache-size", "0"]);
    for (name, d) in files {
        assert!(&fs::read(m.p(name)).expect("read") == d, "{tag}: {name}");
    }
}

/// A CA and a certificate it signed for 127.0.0.1, in `dir`.
fn make_certs(dir: &Path) {
    let d = dir.display();
    sh(&format!(
        "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
           -subj '/CN=tidefs test CA' 2>/dev/null && \
         openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj '/CN=127.0.0.1' \
           2>/dev/null && \
         printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext.cnf && \
         openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt \
           -days 2 -extfile ext.cnf 2>/dev/null"
    ));
    assert!(dir.join("srv.crt").exists(), "openssl made no certificate");
}

#[test]
fn volumes_on_https_endpoints_and_behind_proxies_round_trip_data() {
    let plain = std::env::var("TIDEFS_TEST_S3").expect("TIDEFS_TEST_S3");
    let rest = plain
        .strip_prefix("http://")
        .expect("an http:// test bucket");
    let (hostport, bucket) = rest.split_once('/').expect("host:port/bucket");
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let (crt, key) = (certs.path().join("srv.crt"), certs.path().join("srv.key"));
    let (_relay, tls_port) = start_python(RELAY, &[hostport.as_ref(), crt.as_ref(), key.as_ref()]);
    let url = format!("https://127.0.0.1:{tls_port}/{bucket}");
    let proxy_log = certs.path().join("proxy.log");
    let (_proxy, proxy_port) = start_python(PROXY, &[proxy_log.as_ref()]);
    let ca = certs.path().join("ca.crt");

    // a certificate no trusted CA signed: refused, with a message saying so, nothing formatted
    let v = Volume::new_unformatted("s3tls");
    let (ak, sk) = s3_keys();
    let name = unique_volume_name(&v, "s3tls");
    let out = Command::new(tidefs())
        .args(["format", &v.url, &name, "--storage", "s3", "--bucket", &url])
        .env("ACCESS_KEY", &ak)
        .env("SECRET_KEY", &sk)
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("run tidefs format");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown CA must be refused");
    assert!(
        err.contains("certificate"),
        "the message names the cause: {err}"
    );
    assert!(
        !run(tidefs(), &["status", &v.url]).status.success(),
        "nothing was formatted"
    );
    drop(v);

    // the CA trusted (as operators with a private CA do): format, write, read back
    std::env::set_var("SSL_CERT_FILE", &ca);
    let v = s3_volume_at("s3tls", &url, &[]);
    let files: Vec<(String, Vec<u8>)> = [0usize, 5000, (5 << 20) + 11]
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("f{i}"), bytes(90 + i as u64, *n)))
        .collect();
    round_trip(&v, "tls", &files);

    // through an HTTP proxy, as the environment names it: a CONNECT tunnel for the https
    // endpoint, requests in absolute form (with the proxy's credentials) for a plain-http one
    let seen = || fs::read_to_string(&proxy_log).unwrap_or_default();
    assert_eq!(
        seen(),
        "",
        "nothing went through the proxy before it was named"
    );
    std::env::set_var("HTTPS_PROXY", format!("http://127.0.0.1:{proxy_port}"));
    std::env::set_var("HTTP_PROXY", format!("http://u:p@127.0.0.1:{proxy_port}"));
    round_trip(&v, "tunnel", &files);
    assert!(
        seen().contains(&format!("CONNECT 127.0.0.1:{tls_port} auth=False")),
        "https through a tunnel:\n{}",
        seen()
    );
    let p = s3_volume_at("s3proxy", &plain, &[]);
    round_trip(&p, "proxy", &files);
    assert!(
        seen()
            .lines()
            .any(|l| l.starts_with(&format!("PUT {plain}/")) && l.ends_with("auth=True")),
        "http in absolute form, with credentials:\n{}",
        seen()
    );
}
