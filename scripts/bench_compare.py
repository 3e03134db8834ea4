#!/usr/bin/env python3
"""Side-by-side benchmark of tidefs and juicefs on the same backends (SQLite + local directory).

Each round formats one fresh volume per client, mounts both, and runs the same workloads on each
in turn (tidefs, juicefs, tidefs, ...): a 1 GiB sequential write with fsync, a cold sequential
read (after remount and dropping the page cache), and create/stat/delete of 10 000 small files.
Peak RSS of each mount process is read from /proc/<pid>/status (VmHWM) after the write, and
before every unmount (the row "over the whole round" is the largest of a round's mount processes).
Results: median [min-max] per row and the ratio tidefs/juicefs of medians, printed and saved as
Markdown and JSON under bench/results/. Needs root (drop_caches) and the juicefs binary.

`--meta sqlite,mysql,postgres` repeats the metadata rows (small files, one-directory namespace
operations, ls -l) with the metadata on the MariaDB / PostgreSQL of `scripts/services.sh start`
(URLs from TIDEFS_TEST_MYSQL / TIDEFS_TEST_POSTGRES); each target gets tables of its own
(`table_prefix`), dropped afterwards. Those rows are marked [mysql] / [postgres].

`--s3` adds rows with the data in the S3 server of `scripts/services.sh start` (Ceph RGW; bucket and
keys from TIDEFS_TEST_S3*), metadata in SQLite, both clients with a local disk cache of the same
size in a fresh directory: sequential write and read (cold = empty disk cache and page cache,
warm = from the disk cache after a remount), 4 KiB random reads (cold), 2 000 small files (4 KiB:
create, and read cold, one small GET each), and the model-load
scenario: one 2 GiB file (--model-mib) read whole by 8 processes at once, cold from S3, warm from
the disk cache, and after `warmup` (the warmup time is its own row), then twice more from the disk
cache on read-only mounts (tidefs serves the second by FUSE passthrough from a flat copy made
during the first, then read straight in 3 pairs alternating with passthrough loads: the ratio
row); plus the same 8 readers on a plain local directory (page cache dropped) as the bound. Marked [s3]. The S3 server shares this
machine's two cores with the clients (RGW and the OSD take most of them in the write and cold
rows), so the [s3] rows also give each mount's own CPU seconds per GiB in the sequential write,
the cold read and the cold model load: what the client costs, apart from the server.
"""
import argparse, datetime, glob, json, os, shutil, statistics, subprocess, sys, tempfile, time

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout

def drop_caches():
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")

def server_url(engine, tag):
    var = {"mysql": "TIDEFS_TEST_MYSQL", "postgres": "TIDEFS_TEST_POSTGRES"}[engine]
    base = os.environ.get(var)
    if not base:
        sys.exit(f"--meta {engine} needs {var} (run scripts/services.sh start, then eval \"$(scripts/services.sh env)\")")
    return base + ("&" if "?" in base else "?") + f"table_prefix={tag}"

TABLES = ["setting", "counter", "edge", "node", "symlink", "xattr", "chunk", "chunk_ref", "delslices",
          "session2", "sustained", "delfile", "flock", "plock", "dir_quota", "user_group_quota",
          "dir_stats", "detached_node", "acl", "delegation_token", "change_log"]

def drop_tables(engine, tag):
    stmts = "; ".join(f"DROP TABLE IF EXISTS jfs_{tag}_{t}" for t in TABLES)
    url = server_url(engine, tag).split("table_prefix")[0].rstrip("?&")
    if engine == "postgres":
        subprocess.run(["psql", url, "-q", "-c", stmts], capture_output=True)
    else:
        rest = url.split("://", 1)[1]
        cred, addr = rest.rsplit("@", 1)
        user, pw = cred.split(":", 1)
        hp, dbname = addr.split("/", 1)
        host, port = hp.strip("()").split(":")
        subprocess.run(["mariadb", "-h", host, "-P", port, "-u", user, f"-p{pw}", dbname.split("?")[0], "-e", stmts],
                       capture_output=True)

def s3_settings():
    url = os.environ.get("TIDEFS_TEST_S3")
    if not url:
        sys.exit("--s3 needs TIDEFS_TEST_S3 (run scripts/services.sh start, then eval \"$(scripts/services.sh env)\")")
    return url, os.environ.get("TIDEFS_TEST_S3_ACCESS_KEY", ""), os.environ.get("TIDEFS_TEST_S3_SECRET_KEY", "")

class Target:
    """One filesystem under test. `local` is a plain directory on the same disk (the physical
    bound); `bindfs` is a passthrough FUSE mount of such a directory (the FUSE overhead)."""
    def __init__(self, name, work, tidefs, juicefs, engine="sqlite", tag="", s3=False):
        self.name, self.work, self.engine, self.tag, self.s3 = name, work, engine, tag, s3
        # `base` is tidefs too: another build of it (--base), measured beside this one
        self.kind = "tidefs" if name == "base" else name
        self.cache = f"{work}/cache"
        self.volname = f"bench{tag}" if s3 else "benchvol"
        self.db = f"sqlite3://{work}/meta.db" if engine == "sqlite" else server_url(engine, tag)
        self.bucket = f"{work}/bucket/"
        self.mnt = f"{work}/mnt"
        self.tidefs, self.juicefs = tidefs, juicefs
        os.makedirs(self.bucket, exist_ok=True)
        os.makedirs(self.mnt, exist_ok=True)

    def format(self):
        if self.kind in ("local", "bindfs"):
            os.makedirs(f"{self.work}/backing", exist_ok=True)
            if self.name == "local":
                os.rmdir(self.mnt)
                os.symlink(f"{self.work}/backing", self.mnt)
            return
        if self.s3:
            url, ak, sk = s3_settings()
            store = f"--storage s3 --bucket {url} --access-key {ak} --secret-key {sk}"
        else:
            store = f"--storage file --bucket {self.bucket}"
        if self.kind == "tidefs":
            sh(f"{self.tidefs} format '{self.db}' {self.volname} {store} --trash-days 0")
        else:
            sh(f"{self.juicefs} format --trash-days 0 '{self.db}' {self.volname} {store}")

    def cache_args(self):
        # the same disk cache for both clients: a fresh directory, 20 GiB at most
        return f"--cache-dir {self.cache} --cache-size 20480" if self.s3 else ""

    def empty_cache(self):
        shutil.rmtree(self.cache, ignore_errors=True)

    def destroy(self):
        """Remove the volume's objects from the shared bucket, and the disk cache juicefs keeps
        by default under /var/jfsCache for volumes in a local directory."""
        if self.kind not in ("tidefs", "juicefs"):
            return
        uuid = ""
        try:
            st = json.loads(sh(f"{self.juicefs} status '{self.db}'"))
            uuid = st["Setting"]["UUID"]
        except Exception:
            return
        if uuid:
            shutil.rmtree(f"/var/jfsCache/{uuid}", ignore_errors=True)
        if not self.s3:
            return
        subprocess.run(f"{self.juicefs} destroy --yes '{self.db}' {uuid}", shell=True, capture_output=True)

    def mount(self, extra=""):
        log = f"{self.work}/mount.log"
        if self.name == "local":
            return
        if self.name == "bindfs":
            sh(f"bindfs {self.work}/backing {self.mnt}")
            return
        if self.kind == "tidefs":
            sh(f"{self.tidefs} mount -d '{self.db}' {self.mnt} --log {log} {self.cache_args()} {extra}")
        else:
            sh(f"{self.juicefs} mount -d --log {log} {self.cache_args()} {extra} '{self.db}' {self.mnt}")

    def umount(self, flush=False):
        if self.name == "local":
            return
        # the mount process ends here: keep its high-water mark for the whole-run RSS row
        self.peak = max(getattr(self, "peak", 0), vm(self.pid(), "VmHWM"))
        if self.name == "bindfs":
            sh(f"fusermount3 -u {self.mnt}")
            return
        opt = "--flush" if flush else ""
        if self.kind == "tidefs":
            sh(f"{self.tidefs} umount {opt} {self.mnt}")
        else:
            sh(f"{self.juicefs} umount {opt} {self.mnt}")
        for _ in range(200):
            if not os.path.ismount(self.mnt):
                return
            time.sleep(0.05)

    def pid(self):
        if self.name == "local":
            return None
        if self.kind == "tidefs":
            # the mount records its pid in /run/tidefs/<mountpoint with every other character
            # than [A-Za-z0-9] turned into '_'>.json (its process title hides the arguments)
            mp = os.path.realpath(self.mnt)
            name = "".join(c if c.isascii() and c.isalnum() else "_" for c in mp)
            try:
                with open(f"/run/tidefs/{name}.json") as f:
                    return str(json.load(f)["pid"])
            except (OSError, ValueError, KeyError):
                return None
        pat = {"juicefs": "juicefs mount", "bindfs": "bindfs"}[self.kind]
        out = sh(f"pgrep -f '{pat}.*{self.mnt}' || true").split()
        # juicefs -d leaves a supervisor and a worker: take the one with the largest RSS
        best, rss = None, -1
        for p in out:
            r = vm(p, "VmRSS")
            if r > rss:
                best, rss = p, r
        return best

def vm(pid, field):
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0

def cpu_seconds(t):
    """User + system CPU seconds the mount process has used so far (0 for a plain directory)."""
    pid = t.pid()
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0

def with_cpu(t, fn):
    """fn()'s result and the mount's CPU seconds spent meanwhile: client efficiency, apart from
    the S3 server that shares this machine's cores."""
    c0 = cpu_seconds(t)
    r = fn()
    return r, cpu_seconds(t) - c0

def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t

def seq_write(t, size_mib):
    path = f"{t.mnt}/big"
    return size_mib / timed(lambda: sh(f"dd if=/dev/zero of={path} bs=1M count={size_mib} conv=fsync status=none"))

def seq_read(t, size_mib):
    path = f"{t.mnt}/big"
    return size_mib / timed(lambda: sh(f"dd if={path} of=/dev/null bs=1M status=none"))

SMALL = r'''
import os, sys, time
root, n, phase = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = b"x" * 4096
dirs = [os.path.join(root, "d%d" % i) for i in range(10)]
t = time.perf_counter()
if phase == "create":
    for d in dirs: os.mkdir(d)
    for i in range(n):
        with open(os.path.join(dirs[i % 10], "f%d" % i), "wb") as f: f.write(data)
elif phase == "stat":
    for i in range(n): os.stat(os.path.join(dirs[i % 10], "f%d" % i))
elif phase == "read":
    for i in range(n):
        with open(os.path.join(dirs[i % 10], "f%d" % i), "rb") as f: f.read()
elif phase == "delete":
    for i in range(n): os.unlink(os.path.join(dirs[i % 10], "f%d" % i))
    for d in dirs: os.rmdir(d)
print(n / (time.perf_counter() - t))
'''

NS = r'''
import os, sys, time
root, n, phase = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = time.perf_counter()
if phase == "mkdir":
    for i in range(n): os.mkdir(os.path.join(root, "d%d" % i))
elif phase == "rename":
    for i in range(n): os.rename(os.path.join(root, "d%d" % i), os.path.join(root, "r%d" % i))
elif phase == "rmdir":
    for i in range(n): os.rmdir(os.path.join(root, "r%d" % i))
print(n / (time.perf_counter() - t))
'''

def namespace(t, n, phase):
    return float(subprocess.run([sys.executable, "-c", NS, f"{t.mnt}/ns", str(n), phase], check=True, capture_output=True, text=True).stdout)

MODEL_READERS = 8

def model_load(t, path):
    """Seconds for MODEL_READERS processes to each read `path` whole, started together."""
    procs = f"for i in $(seq {MODEL_READERS}); do dd if={path} of=/dev/null bs=4M status=none & done; wait"
    return timed(lambda: sh(procs))

def warmup(t, path):
    cmd = f"{t.tidefs} warmup {path}" if t.kind == "tidefs" else f"{t.juicefs} warmup {path}"
    return timed(lambda: sh(cmd))

def s3_rows(t, a, add):
    """Data rows with the data in S3 and a local disk cache (see the module doc)."""
    who, sfx = t.name, " [s3]"
    model_mib = a.model_mib
    if who == "local":
        sh(f"dd if=/dev/urandom of={t.mnt}/model bs=1M count={model_mib} status=none")
        drop_caches()
        add(f"model load {model_mib} MiB x {MODEL_READERS} readers, warm disk cache (MiB/s){sfx}", "local", model_mib / model_load(t, f"{t.mnt}/model"))
        return
    gib = a.size_mib / 1024
    rate, cpu = with_cpu(t, lambda: seq_write(t, a.size_mib))
    add(f"seq write {a.size_mib} MiB (MiB/s){sfx}", who, rate)
    add(f"mount CPU per GiB, seq write (s){sfx}", who, cpu / gib)
    t.umount(); t.empty_cache(); drop_caches(); t.mount()
    rate, cpu = with_cpu(t, lambda: seq_read(t, a.size_mib))
    add(f"seq read cold {a.size_mib} MiB (MiB/s){sfx}", who, rate)
    add(f"mount CPU per GiB, seq read cold (s){sfx}", who, cpu / gib)
    t.umount(); drop_caches(); t.mount()
    add(f"seq read from disk cache {a.size_mib} MiB (MiB/s){sfx}", who, seq_read(t, a.size_mib))
    os.remove(f"{t.mnt}/big")
    # writeback: the write is acknowledged once its blocks are staged on the cache disk; the
    # second row counts until `umount --flush` has uploaded them all
    t.umount(); t.mount("--writeback")
    t0 = time.monotonic()
    add(f"seq write {a.size_mib} MiB --writeback (MiB/s){sfx}", who, seq_write(t, a.size_mib))
    t.umount(flush=True)
    add(f"seq write {a.size_mib} MiB --writeback incl. umount --flush (MiB/s){sfx}", who, a.size_mib / (time.monotonic() - t0))
    t.mount()
    os.remove(f"{t.mnt}/big")
    if shutil.which("fio") and a.fio:
        sh(f"dd if=/dev/urandom of={t.mnt}/fio.dat bs=1M count=256 conv=fsync status=none")
        t.umount(); t.empty_cache(); drop_caches(); t.mount()
        iops, p99 = fio_randread(t, 4)
        add(f"4 KiB random read cold, 4 jobs (IOPS){sfx}", who, iops)
        os.remove(f"{t.mnt}/fio.dat")
    # small files: each is one object; the cold read is one small GET per file (RGW's default
    # frontend delays small responses by the client's delayed ACK, which tidefs avoids)
    n_small = min(a.files, 2000)
    os.mkdir(f"{t.mnt}/small")
    add(f"create {n_small} x 4 KiB (files/s){sfx}", who, small(t, n_small, "create"))
    t.umount(); t.empty_cache(); drop_caches(); t.mount()
    add(f"read {n_small} x 4 KiB cold (files/s){sfx}", who, small(t, n_small, "read"))
    shutil.rmtree(f"{t.mnt}/small")
    sh(f"dd if=/dev/urandom of={t.mnt}/model bs=1M count={model_mib} conv=fsync status=none")
    model = f"{t.mnt}/model"
    t.umount(); t.empty_cache(); drop_caches(); t.mount()
    secs, cpu = with_cpu(t, lambda: model_load(t, model))
    add(f"model load {model_mib} MiB x {MODEL_READERS} readers, cold (MiB/s){sfx}", who, model_mib / secs)
    add(f"mount CPU per GiB, model load cold (s){sfx}", who, cpu / (model_mib / 1024))
    t.umount(); drop_caches(); t.mount()
    add(f"model load {model_mib} MiB x {MODEL_READERS} readers, warm disk cache (MiB/s){sfx}", who, model_mib / model_load(t, model))
    t.umount(); t.empty_cache(); drop_caches(); t.mount()
    add(f"warmup {model_mib} MiB from S3 (MiB/s){sfx}", who, model_mib / warmup(t, model))
    drop_caches()
    add(f"model load {model_mib} MiB x {MODEL_READERS} readers, after warmup (MiB/s){sfx}", who, model_mib / model_load(t, model))
    # the warm load again on read-only mounts, as model-serving pods mount a model volume: the
    # first load goes through the mount (tidefs keeps a flat copy of the file on the cache disk
    # from it), the second is served by the kernel from that copy (FUSE passthrough); juicefs
    # reads through its mount both times. This disk's speed drifts within a round (by 2x after
    # heavy I/O), so a plain local copy of the model written before these loads is read right
    # after them, as the reference of the same moment
    plain = f"{t.work}/plain-model"
    sh(f"dd if=/dev/urandom of={plain} bs=1M count={model_mib} conv=fsync status=none")
    for nth in ("1st", "2nd"):
        t.umount(); drop_caches(); t.mount("--read-only")
        secs, cpu = with_cpu(t, lambda: model_load(t, model))
        add(f"model load {model_mib} MiB x {MODEL_READERS} readers, warm, read-only mount, {nth} (MiB/s){sfx}", who, model_mib / secs)
        add(f"mount CPU per GiB, read-only model load {nth} (s){sfx}", who, cpu / (model_mib / 1024))
    copies = glob.glob(f"{t.cache}/*/flat/*") if who == "tidefs" else []
    if copies:
        # the file the kernel reads by passthrough, read straight: same bytes on the same disk
        # blocks, so the pair shows what passthrough costs apart from where the copy landed on
        # this disk (whose speed for one file swings by 2x from one read to the next); three
        # alternating pairs, ratio of the medians
        through, direct = [], []
        for _ in range(3):
            drop_caches()
            through.append(model_mib / model_load(t, model))
            drop_caches()
            direct.append(model_mib / model_load(t, copies[0]))
        add(f"model load {model_mib} MiB x {MODEL_READERS} readers, the flat copy read directly (MiB/s){sfx}", who, statistics.median(direct))
        add(f"read-only load by passthrough / the flat copy read directly, 3 alternating pairs (ratio){sfx}", who, statistics.median(through) / statistics.median(direct))
    drop_caches()
    add(f"model load {model_mib} MiB x {MODEL_READERS} readers, plain local file right after (MiB/s){sfx}", who, model_mib / model_load(t, plain))
    os.remove(plain)
    t.umount(); t.mount()

def ls_l(t, path):
    return timed(lambda: sh(f"ls -l {path} > /dev/null"))

def fio_randread(t, jobs):
    """4 KiB random reads with O_DIRECT: (IOPS, p99 latency in microseconds)."""
    out = sh(f"fio --name=rr --filename={t.mnt}/fio.dat --rw=randread --bs=4k --direct=1 --numjobs={jobs} "
             f"--time_based --runtime=10 --group_reporting --size=256m --ioengine=psync --output-format=json")
    job = json.loads(out[out.index("{"):])["jobs"][0]["read"]
    return job["iops"], job["clat_ns"]["percentile"]["99.000000"] / 1000

def small(t, n, phase):
    return float(subprocess.run([sys.executable, "-c", SMALL, f"{t.mnt}/small", str(n), phase], check=True, capture_output=True, text=True).stdout)

def metadata_rows(t, a, add, sfx):
    """The metadata workloads: small files, namespace operations in one directory, ls -l."""
    who = t.name
    os.mkdir(f"{t.mnt}/small")
    add(f"create {a.files} x 4 KiB (files/s){sfx}", who, small(t, a.files, "create"))
    t.umount(); drop_caches(); t.mount()
    add(f"stat {a.files} cold (files/s){sfx}", who, small(t, a.files, "stat"))
    add(f"read {a.files} x 4 KiB (files/s){sfx}", who, small(t, a.files, "read"))
    add(f"delete {a.files} (files/s){sfx}", who, small(t, a.files, "delete"))
    os.mkdir(f"{t.mnt}/ns")
    for phase in ("mkdir", "rename", "rmdir"):
        add(f"{phase} {a.dirs} in one dir (ops/s){sfx}", who, namespace(t, a.dirs, phase))
    os.mkdir(f"{t.mnt}/ls")
    sh(f"cd {t.mnt}/ls && seq 1 {a.files} | xargs touch")
    t.umount(); drop_caches(); t.mount()
    add(f"ls -l {a.files} entries cold (s){sfx}", who, ls_l(t, f"{t.mnt}/ls"))
    add(f"ls -l {a.files} entries warm (s){sfx}", who, ls_l(t, f"{t.mnt}/ls"))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tidefs", default="target/release/tidefs")
    ap.add_argument("--base", help="another tidefs binary (an earlier build) measured beside --tidefs in every round, as `base`")
    ap.add_argument("--juicefs", default=os.environ.get("JUICEFS_BIN", "/opt/jfs/bin/juicefs"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--dirs", type=int, default=5000)
    ap.add_argument("--refs", default="local,bindfs", help="reference targets: local (plain directory), bindfs (passthrough FUSE)")
    ap.add_argument("--no-fio", dest="fio", action="store_false", help="skip the fio random-read rows")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--meta", default="sqlite", help="metadata engines, comma-separated: sqlite,mysql,postgres")
    ap.add_argument("--s3", action="store_true", help="add the S3 rows and the model-load scenario (needs the S3 server of scripts/services.sh)")
    ap.add_argument("--s3-only", action="store_true", help="only the S3 rows")
    ap.add_argument("--model-mib", type=int, default=2048)
    a = ap.parse_args()
    rows = {}
    def add(row, who, v):
        rows.setdefault(row, {}).setdefault(who, []).append(v)
    targets = ["tidefs", "juicefs"] + (["base"] if a.base else []) + [x for x in ("local", "bindfs") if x in a.refs]
    have_fio = shutil.which("fio") is not None
    if a.s3 or a.s3_only:
        s3_settings()
    engines = [] if a.s3_only else a.meta.split(",")
    if a.s3 or a.s3_only:
        engines.append("s3")
    for engine in engines:
      sfx = "" if engine == "sqlite" else f" [{engine}]"
      for rnd in range(a.rounds):
        these = targets if engine == "sqlite" else ["tidefs", "juicefs"] + (["base"] if a.base else [])
        if engine == "s3":
            these = ["tidefs", "juicefs"] + (["local"] if "local" in a.refs or rnd == 0 else [])
        order = these if rnd % 2 == 0 else list(reversed(these))
        for who in order:
            work = tempfile.mkdtemp(prefix=f"bench-{who}-", dir="/var/tmp")
            tag = f"b{os.getpid()}{rnd}{who[0]}"
            is_s3 = engine == "s3"
            binary = os.path.abspath(a.base if who == "base" else a.tidefs)
            t = Target(who, work, binary, a.juicefs, "sqlite" if is_s3 else engine, tag, s3=is_s3)
            try:
                t.format(); t.mount()
                if is_s3:
                    s3_rows(t, a, add)
                    t.umount()
                    if who != "local":
                        add(f"mount peak RSS over the whole round (MiB) [s3]", who, t.peak / 2**20)
                    continue
                if engine != "sqlite":
                    metadata_rows(t, a, add, sfx)
                    t.umount()
                    add(f"mount peak RSS over the whole round (MiB){sfx}", who, t.peak / 2**20)
                    continue
                pid = t.pid()
                add(f"seq write {a.size_mib} MiB (MiB/s)", who, seq_write(t, a.size_mib))
                if pid is not None:
                    add("mount peak RSS during write (MiB)", who, vm(pid, "VmHWM") / 2**20)
                # cp uses copy_file_range: the two clients share slices, the references copy data
                add(f"cp of the {a.size_mib} MiB file (MiB/s)", who,
                    a.size_mib / timed(lambda: sh(f"cp {t.mnt}/big {t.mnt}/big.copy")))
                os.remove(f"{t.mnt}/big.copy")
                t.umount(); drop_caches(); t.mount()
                add(f"seq read cold {a.size_mib} MiB (MiB/s)", who, seq_read(t, a.size_mib))
                add(f"seq read warm {a.size_mib} MiB (MiB/s)", who, seq_read(t, a.size_mib))
                os.remove(f"{t.mnt}/big")
                if have_fio and a.fio:
                    sh(f"dd if=/dev/urandom of={t.mnt}/fio.dat bs=1M count=256 conv=fsync status=none")
                    t.umount(); drop_caches(); t.mount()
                    for jobs in (1, 4):
                        iops, p99 = fio_randread(t, jobs)
                        add(f"4 KiB random read, {jobs} job(s) (IOPS)", who, iops)
                        add(f"4 KiB random read, {jobs} job(s) p99 (us)", who, p99)
                    os.remove(f"{t.mnt}/fio.dat")
                metadata_rows(t, a, add, "")
                t.umount()
                if who != "local":
                    add("mount peak RSS over the whole round (MiB)", who, t.peak / 2**20)
            finally:
                if os.path.ismount(t.mnt):
                    subprocess.run(f"fusermount3 -uz {t.mnt}", shell=True)
                t.destroy()
                shutil.rmtree(work, ignore_errors=True)
                if engine not in ("sqlite", "s3"):
                    drop_tables(engine, tag)
            print(f"{engine} round {rnd + 1} {who} done", file=sys.stderr)
    refs = (["base"] if a.base else []) + [x for x in ("local", "bindfs") if x in a.refs or (x == "local" and (a.s3 or a.s3_only))]
    head = "| workload | tidefs median [min-max] | juicefs median [min-max] | tidefs/juicefs |" + "".join(f" {r} median |" for r in refs)
    if a.base:
        head += " tidefs/base |"
    lines = [head, "|---|---|---|---|" + "---|" * (len(refs) + bool(a.base))]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "rounds": a.rounds, "rows": {}}
    for row, v in rows.items():
        med = {w: statistics.median(x) for w, x in v.items()}
        ratio = med["tidefs"] / med["juicefs"] if med.get("juicefs") and "tidefs" in med else float("nan")
        fmt = lambda x: f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"
        cell = lambda w: f"{fmt(med[w])} [{fmt(min(v[w]))}-{fmt(max(v[w]))}]" if w in med else "-"
        extra = "".join(f" {fmt(med[r])} |" if r in med else " - |" for r in refs)
        if a.base:
            vs = med["tidefs"] / med["base"] if med.get("base") and "tidefs" in med else float("nan")
            extra += f" {vs:.2f} |"
        lines.append(f"| {row} | {cell('tidefs')} | {cell('juicefs')} | {ratio:.2f} |{extra}")
        result["rows"][row] = {**{w: v[w] for w in v}, "ratio_of_medians": ratio}
    table = "\n".join(lines)
    print(table)
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    with open(f"{a.out}/{stamp}.md", "w") as f:
        where = "data in S3 (the RGW of scripts/services.sh, on this machine)" if a.s3_only else (
            "data in a local directory" + (" and, for [s3] rows, in S3 (RGW on this machine)" if a.s3 else ""))
        f.write(f"# tidefs vs juicefs, metadata on {a.meta}, {where}, {a.rounds} interleaved rounds\n\n{table}\n\n"
                "For RSS, latency, mount CPU and `ls -l` seconds lower is better; for every other row higher is better. "
                "`local` is a plain directory on the same disk, `bindfs` a passthrough FUSE mount of one"
                + (f"; `base` is another tidefs build ({a.base})" if a.base else "") + ".\n")
    with open(f"{a.out}/{stamp}.json", "w") as f:
        json.dump(result, f, indent=1)

if __name__ == "__main__":
    main()
