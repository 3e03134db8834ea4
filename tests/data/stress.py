"""Random namespace and data operations on one directory, for the stress test in tests/fuse.rs.
Usage: stress.py ROOT SEED SECONDS. Prints the errno counts as JSON on the last line."""
import json
import os, random, sys, time, hashlib
root, seed, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rnd = random.Random(seed)
os.makedirs(f"{root}/s", exist_ok=True)
end = time.time() + secs
ops = 0; errs = {}
def name(): return f"{root}/s/f{rnd.randrange(200)}"
def dname(): return f"{root}/s/d{rnd.randrange(20)}"
while time.time() < end:
    op = rnd.randrange(9)
    try:
        if op == 0:
            with open(name(), "wb") as f: f.write(os.urandom(rnd.randrange(1, 300000)))
        elif op == 1:
            with open(name(), "rb") as f: f.read()
        elif op == 2: os.rename(name(), name())
        elif op == 3: os.unlink(name())
        elif op == 4: os.mkdir(dname())
        elif op == 5: os.rmdir(dname())
        elif op == 6:
            with open(name(), "r+b") as f:
                f.seek(rnd.randrange(0, 500000)); f.write(os.urandom(rnd.randrange(1, 70000)))
                if rnd.random() < 0.3: os.fsync(f.fileno())
        elif op == 7: os.truncate(name(), rnd.randrange(0, 400000))
        elif op == 8: os.link(name(), name())
        ops += 1
    except OSError as e:
        errs[e.errno] = errs.get(e.errno, 0) + 1
print(json.dumps({"ops": ops, "errors": {str(k): v for k, v in errs.items()}}))
