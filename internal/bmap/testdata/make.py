# Regenerates the .bmap files here (run from this directory). The image is
# the deterministic one smallImage() in bmap_test.go writes.
import hashlib, os, re, subprocess, sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from bmaptools import BmapCreate

SIZE = 200000
REGIONS = [(0, 4096), (16384, 30000), (65536, 65537), (196608, 200000)]
def make(path):
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for a, b in REGIONS:
            f.seek(a)
            f.write(bytes(((o * 31 + 7) % 251) for o in range(a, b)))

img = "/tmp/small.img"
make(img)
subprocess.run(["bmaptool", "create", "-o", "small-2.0.bmap", img], check=True)

def refix(text, field, cstype):
    n = len(hashlib.new(cstype).hexdigest())
    text = re.sub(r"<%s> [0-9a-f]+ </%s>" % (field, field), "<%s> %s </%s>" % (field, "0" * n, field), text)
    cs = hashlib.new(cstype, text.encode()).hexdigest()
    return text.replace("0" * n + " </%s>" % field, cs + " </%s>" % field, 1)

# 1.4: the 2.0 layout under its mistaken number, with SHA1 ranges.
with open("small-1.4.bmap", "w+") as out:
    BmapCreate.BmapCreate(img, out, "sha1").generate()
t = open("small-1.4.bmap").read().replace('<bmap version="2.0">', '<bmap version="1.4">')
open("small-1.4.bmap", "w").write(refix(t, "BmapFileChecksum", "sha1"))

# 1.3: SHA1 under the old names.
t = open("small-1.4.bmap").read().replace('<bmap version="1.4">', '<bmap version="1.3">')
t = re.sub(r"\s*<!-- Type of checksum used in this file -->\n\s*<ChecksumType> sha1 </ChecksumType>\n", "\n", t)
t = t.replace("BmapFileChecksum", "BmapFileSHA1").replace('chksum="', 'sha1="')
open("small-1.3.bmap", "w").write(refix(t, "BmapFileSHA1", "sha1"))

# 1.2: no checksums at all.
t = open("small-1.3.bmap").read().replace('<bmap version="1.3">', '<bmap version="1.2">')
t = re.sub(r'\s*<!-- The checksum of this bmap file.*?</BmapFileSHA1>\n', "\n", t, flags=re.S)
t = re.sub(r' sha1="[0-9a-f]+"', "", t)
open("small-1.2.bmap", "w").write(t)
