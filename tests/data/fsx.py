"""A file-system exerciser in the spirit of fsx: random data operations on one file, every read
checked against an in-memory model of what the file must hold.

  fsx.py run FILE SEED OPS MODEL [--max-size BYTES] [--other PATH]
                                                      operate, then save the model to MODEL;
                                                      PATH: the same file seen through another
                                                      mount: read there after each close, and
                                                      the run takes turns between the two
  fsx.py check FILE MODEL                              compare FILE with a saved model
  fsx.py run ... --crash-state PREFIX                  crash mode: when a call fails (the mount
                                                      was killed), save what the last fsync made
                                                      durable and what changed since, exit 3
  fsx.py crashcheck FILE PREFIX                        after the remount: every fsynced byte
                                                      nothing changed since reads back

Offsets favour the places where a JuiceFS-format file system changes how it stores bytes: 4 MiB
block and 64 MiB chunk boundaries, the end of the file, holes. Operations: pwrite, pread, truncate
(grow and shrink), fallocate (extend, punch hole, zero range), copy_file_range inside the file,
writes and reads through a shared mapping, O_DIRECT reads and writes, O_APPEND writes, writes and
reads through a second handle, fsync, fdatasync, close and reopen, dropping the file's cached
pages, and with --other, turns between two mounts (close on one, open on the other). The first
mismatch stops the run with the recent operations, the offset and the bytes there (exit 1)."""
import ctypes, errno, json, mmap, os, random, sys

BLOCK, CHUNK = 4 << 20, 64 << 20
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def read_upto(fd, off, n):
    """Up to `n` bytes at `off` (fewer only at the end of the file)."""
    got = bytearray()
    while len(got) < n:
        part = os.pread(fd, n - len(got), off + len(got))
        if not part:
            break
        got += part
    return bytes(got)


class Fail(Exception):
    pass


class MountGone(Exception):
    """Crash mode: a call failed, as it does once the mount process was killed."""


class Fsx:
    def __init__(self, path, seed, max_size, other=None, crash=None):
        self.path, self.rnd, self.max_size = path, random.Random(seed), max_size
        self.other = other
        # crash mode: what the last successful fsync made durable, and what may have changed
        # since (ranges written, or being written, after it; end None = to the end of the file)
        self.crash = crash
        self.synced, self.dirty, self.size_dirty = b"", [], True
        self.model = bytearray()
        self.log = []
        self.counts = {}
        self.disabled = set()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        # a second handle of the same file: writes through one must be seen through the other
        self.fd2 = os.open(path, os.O_RDWR)

    # ---- choosing where and how much
    def offset(self, within=None):
        r = self.rnd
        limit = self.max_size if within is None else max(within, 1)
        pick = r.random()
        if pick < 0.3:
            edge = r.choice([BLOCK, CHUNK]) * r.randrange(0, limit // BLOCK + 1)
            off = edge + r.randrange(-5000, 5000)
        elif pick < 0.45:
            off = len(self.model) + r.randrange(-3000, 3000)
        else:
            off = r.randrange(0, limit)
        return min(max(off, 0), limit - 1)

    def length(self):
        r = self.rnd.random()
        if r < 0.5:
            return self.rnd.randrange(1, 4097)
        if r < 0.85:
            return self.rnd.randrange(1, 256 << 10)
        return self.rnd.randrange(1, 5 << 20)

    def note(self, text):
        self.log.append(text)
        del self.log[:-25]

    # ---- the model
    def intend(self, start, end):
        """Record, before issuing it, what an operation may change (for crash mode)."""
        self.dirty.append((start, end))
        if end is None or end > len(self.model):
            self.size_dirty = True

    def synced_now(self):
        if self.crash:
            self.synced, self.dirty, self.size_dirty = bytes(self.model), [], False

    def dump_crash_state(self):
        with open(self.crash + ".model", "wb") as f:
            f.write(self.synced)
        with open(self.crash + ".json", "w") as f:
            json.dump({"dirty": self.dirty, "size_dirty": self.size_dirty}, f)

    def model_write(self, off, data):
        end = off + len(data)
        if end > len(self.model):
            self.model.extend(bytes(end - len(self.model)))
        self.model[off:end] = data

    def model_resize(self, size):
        if size < len(self.model):
            del self.model[size:]
        else:
            self.model.extend(bytes(size - len(self.model)))

    def compare(self, what, off, got):
        want = bytes(self.model[off:off + len(got)]) if off < len(self.model) else b""
        if got == want:
            return
        first = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                     min(len(got), len(want)))
        raise Fail(f"{what}: at file offset {off + first} (read at {off}, {len(got)} bytes, "
                   f"file size {len(self.model)} in the model): expected "
                   f"{want[first:first + 16].hex()} ({len(want)} bytes), got "
                   f"{got[first:first + 16].hex()} ({len(got)} bytes)")

    # ---- operations
    def op_write(self):
        off = self.offset()
        n = min(self.length(), self.max_size - off)
        data = os.urandom(n)
        fd, which = (self.fd2, " (second handle)") if self.rnd.random() < 0.2 else (self.fd, "")
        self.note(f"pwrite {off} +{n}{which}")
        self.intend(off, off + n)
        done = 0
        while done < n:
            done += os.pwrite(fd, data[done:], off + done)
        self.model_write(off, data)

    def op_append(self):
        n = min(self.length(), max(self.max_size - len(self.model), 0))
        if n == 0:
            return self.op_truncate()
        data = os.urandom(n)
        self.note(f"O_APPEND write +{n} at {len(self.model)}")
        self.intend(len(self.model), len(self.model) + n)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            done = 0
            while done < n:
                done += os.write(fd, data[done:])
        finally:
            os.close(fd)
        self.model_write(len(self.model), data)

    def op_read(self):
        off = self.offset(len(self.model) + 1)
        n = self.length()
        fd, which = (self.fd2, " (second handle)") if self.rnd.random() < 0.2 else (self.fd, "")
        self.note(f"pread {off} +{n}{which}")
        self.compare("pread", off, read_upto(fd, off, n))

    def op_truncate(self):
        size = self.offset() if self.rnd.random() < 0.5 else self.rnd.randrange(0, len(self.model) + 1)
        self.note(f"truncate {size}")
        self.intend(size, None)
        os.ftruncate(self.fd, size)
        self.model_resize(size)

    def op_falloc(self):
        kind = self.rnd.choice(["extend", "punch", "zero", "zero-keep"])
        off, n = self.offset(), self.length()
        n = min(n, self.max_size - off)
        self.note(f"fallocate {kind} {off} +{n}")
        self.intend(off, off + n)
        if kind == "extend":
            fallocate(self.fd, 0, off, n)
            if off + n > len(self.model):
                self.model_resize(off + n)
        elif kind == "punch":
            fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n)
            end = min(off + n, len(self.model))
            if off < end:
                self.model[off:end] = bytes(end - off)
        else:
            keep = kind == "zero-keep"
            fallocate(self.fd, FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if keep else 0), off, n)
            end = off + n if not keep else min(off + n, len(self.model))
            if end > len(self.model):
                self.model_resize(end)
            if off < end:
                self.model[off:end] = bytes(end - off)

    def op_copy_range(self):
        size = len(self.model)
        if size < 2:
            return self.op_write()
        src = self.rnd.randrange(0, size)
        n = min(self.length(), size - src)
        dst = self.offset()
        if src < dst + n and dst < src + n:  # overlapping ranges of one file are EINVAL
            return
        n = min(n, self.max_size - dst)
        self.note(f"copy_file_range {src} -> {dst} +{n}")
        self.intend(dst, dst + n)
        data = bytes(self.model[src:src + n])
        done = 0
        while done < n:
            c = os.copy_file_range(self.fd, self.fd, n - done, src + done, dst + done)
            if c == 0:
                break
            done += c
        if done != n:
            raise Fail(f"copy_file_range copied {done} of {n} bytes inside the file")
        self.model_write(dst, data)

    def op_mmap(self):
        size = len(self.model)
        if size == 0:
            return self.op_write()
        off = self.rnd.randrange(0, size)
        n = min(self.length(), size - off)
        base = off - off % mmap.ALLOCATIONGRANULARITY
        m = mmap.mmap(self.fd, off + n - base, mmap.MAP_SHARED, offset=base)
        try:
            if self.rnd.random() < 0.5:
                self.note(f"mmap read {off} +{n}")
                self.compare("read through a mapping", off, m[off - base:off - base + n])
            else:
                data = os.urandom(n)
                self.note(f"mmap write {off} +{n}")
                self.intend(off, off + n)
                m[off - base:off - base + n] = data
                self.model_write(off, data)
                if self.rnd.random() < 0.5:
                    m.flush()
        finally:
            m.close()

    def op_direct_read(self):
        size = len(self.model)
        off = self.rnd.randrange(0, size + 1) // 4096 * 4096
        n = self.rnd.choice([4096, 65536, 1 << 20, 4 << 20])
        self.note(f"O_DIRECT read {off} +{n}")
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
        try:
            buf = mmap.mmap(-1, n)
            got = os.preadv(fd, [buf], off)
            self.compare("O_DIRECT read", off, bytes(buf[:got]))
            buf.close()
        finally:
            os.close(fd)

    def op_direct_write(self):
        off = self.rnd.randrange(0, self.max_size) // 4096 * 4096
        n = min(self.rnd.choice([4096, 65536, 1 << 20, 4 << 20]), (self.max_size - off) // 4096 * 4096)
        if n == 0:
            return
        data = os.urandom(n)
        self.note(f"O_DIRECT write {off} +{n}")
        self.intend(off, off + n)
        fd = os.open(self.path, os.O_WRONLY | os.O_DIRECT)
        try:
            buf = mmap.mmap(-1, n)
            buf[:] = data
            done = os.pwritev(fd, [buf], off)
            buf.close()
        finally:
            os.close(fd)
        if done != n:
            raise Fail(f"O_DIRECT write wrote {done} of {n} bytes")
        self.model_write(off, data)

    def op_sync(self):
        if self.rnd.random() < 0.5:
            self.note("fsync")
            os.fsync(self.fd)
        else:
            self.note("fdatasync")
            os.fdatasync(self.fd)
        self.synced_now()

    def op_switch(self):
        """Carry on through the other mount: close both handles here, open there (each switch
        is a close followed by an open on another client, so close-to-open must hold for
        writes as well as reads)."""
        if not self.other:
            return self.op_reopen()
        self.note(f"close, continue through the other mount ({self.other})")
        os.close(self.fd)
        os.close(self.fd2)
        self.path, self.other = self.other, self.path
        self.fd = os.open(self.path, os.O_RDWR)
        self.fd2 = os.open(self.path, os.O_RDWR)
        st = os.fstat(self.fd).st_size
        if st != len(self.model):
            raise Fail(f"size through the other mount is {st}, the model says {len(self.model)}")

    def op_reopen(self):
        self.note("close, reopen")
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDWR)
        st = os.fstat(self.fd).st_size
        if st != len(self.model):
            raise Fail(f"size after reopen is {st}, the model says {len(self.model)}")
        if self.other:
            # close-to-open: another mount of the volume opening the file now sees every byte
            off = self.offset(len(self.model) + 1)
            n = self.length()
            self.note(f"read {off} +{n} through the other mount")
            fd = os.open(self.other, os.O_RDONLY)
            try:
                st = os.fstat(fd).st_size
                if st != len(self.model):
                    raise Fail(f"the other mount says {st} bytes after close, the model {len(self.model)}")
                self.compare("read through the other mount", off, read_upto(fd, off, n))
            finally:
                os.close(fd)

    def op_drop(self):
        self.note("fsync, drop cached pages")
        os.fsync(self.fd)
        self.synced_now()
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def op_stat(self):
        st = os.fstat(self.fd).st_size
        self.note(f"fstat -> {st}")
        if st != len(self.model):
            raise Fail(f"fstat says {st} bytes, the model says {len(self.model)}")

    OPS = [(op_write, 30), (op_append, 3), (op_read, 30), (op_truncate, 4), (op_falloc, 5), (op_copy_range, 5),
           (op_mmap, 8), (op_direct_read, 4), (op_sync, 4), (op_reopen, 3), (op_drop, 3),
           (op_stat, 4), (op_switch, 2), (op_direct_write, 3)]

    def step(self):
        ops = [(f, w) for f, w in self.OPS if f.__name__ not in self.disabled]
        if self.crash:
            # a mapping of a file whose mount died faults (SIGBUS) instead of failing a call
            ops = [(f, w) for f, w in ops if f.__name__ != "op_mmap"]
        f = self.rnd.choices([f for f, _ in ops], weights=[w for _, w in ops])[0]
        try:
            f(self)
        except OSError as e:
            # an operation the file system does not offer is left out from then on;
            # every other error is a failure
            if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS) and f.__name__ != "op_write":
                self.disabled.add(f.__name__)
                self.note(f"  -> {os.strerror(e.errno)}: {f.__name__} left out")
                self.model_unchanged_check()
                return
            if self.crash:
                raise MountGone(f"{self.log[-1]}: {e}") from e
            raise Fail(f"{self.log[-1]}: {e}") from e
        self.counts[f.__name__] = self.counts.get(f.__name__, 0) + 1

    def model_unchanged_check(self):
        self.op_stat()

    def final_check(self):
        os.fsync(self.fd)
        self.op_stat()
        check_file(self.path, self.model)


def check_file(path, model):
    with open(path, "rb") as f:
        off = 0
        while True:
            part = f.read(8 << 20)
            if not part:
                break
            want = bytes(model[off:off + len(part)])
            if part != want:
                first = next((i for i in range(min(len(part), len(want))) if part[i] != want[i]),
                             min(len(part), len(want)))
                raise Fail(f"full read of {path}: first difference at {off + first}")
            off += len(part)
    if off != len(model):
        raise Fail(f"full read of {path} gave {off} bytes, the model has {len(model)}")


def crash_check(path, prefix):
    """After a crash: every byte the last fsync made durable and nothing changed since must
    read back; the size too, unless an operation since may have changed it."""
    with open(prefix + ".model", "rb") as f:
        synced = f.read()
    with open(prefix + ".json") as f:
        state = json.load(f)
    with open(path, "rb") as f:
        got = f.read()
    if not state["size_dirty"] and len(got) != len(synced):
        raise Fail(f"{path} has {len(got)} bytes after the crash; {len(synced)} were fsynced "
                   f"and nothing changed the size since")
    limit = min(len(got), len(synced))
    # the ranges nothing touched since the last fsync
    clean, at = [], 0
    for start, end in sorted((s, limit if e is None else min(e, limit)) for s, e in state["dirty"]):
        if start > at:
            clean.append((at, min(start, limit)))
        at = max(at, end)
    if at < limit:
        clean.append((at, limit))
    checked = 0
    for start, end in clean:
        if start >= end:
            continue
        if got[start:end] != synced[start:end]:
            first = next(i for i in range(start, end) if got[i] != synced[i])
            raise Fail(f"{path}: byte {first} differs from what was fsynced "
                       f"({synced[first:first + 16].hex()} fsynced, {got[first:first + 16].hex()} read)"
                       f" and no operation changed it since")
        checked += end - start
    return (f"fsx crash check ok: {path}: {checked} fsynced bytes intact, {len(state['dirty'])} "
            f"ranges changed after the last fsync not checked")


def main():
    if sys.argv[1] == "run":
        path, seed, nops, model_path = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        opts = dict(zip(sys.argv[6::2], sys.argv[7::2]))
        max_size = int(opts.get("--max-size", 70 << 20))
        fx = Fsx(path, seed, max_size, opts.get("--other"), opts.get("--crash-state"))
        try:
            for _ in range(nops):
                fx.step()
            fx.final_check()
        except Fail as e:
            print(f"FSX FAILED (seed {seed}): {e}\nlast operations:\n  " + "\n  ".join(fx.log))
            sys.exit(1)
        except MountGone as e:
            fx.dump_crash_state()
            print(f"fsx stopped by a failed call (seed {seed}, {sum(fx.counts.values())} "
                  f"operations done): {e}; {len(fx.synced)} bytes synced, "
                  f"{len(fx.dirty)} ranges changed since")
            sys.exit(3)
        if fx.crash:
            fx.synced_now()
            fx.dump_crash_state()
        os.close(fx.fd)
        os.close(fx.fd2)
        with open(model_path, "wb") as f:
            f.write(fx.model)
        print(f"fsx ok: seed {seed}, {nops} operations, final size {len(fx.model)}, "
              f"left out {sorted(fx.disabled)}, counts {fx.counts}")
    elif sys.argv[1] == "crashcheck":
        path, prefix = sys.argv[2], sys.argv[3]
        try:
            print(crash_check(path, prefix))
        except Fail as e:
            print(f"FSX CRASH CHECK FAILED: {e}")
            sys.exit(1)
    elif sys.argv[1] == "check":
        path, model_path = sys.argv[2], sys.argv[3]
        with open(model_path, "rb") as f:
            model = f.read()
        try:
            check_file(path, model)
        except Fail as e:
            print(f"FSX CHECK FAILED: {e}")
            sys.exit(1)
        print(f"fsx check ok: {path}, {len(model)} bytes")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
