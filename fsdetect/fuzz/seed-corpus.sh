#!/bin/bash
# Seeds fsdetect's fuzz corpora with real on-disk structures: makes small
# images with the real tools, keeps their first and last 256 KiB (where the
# signatures live; 1 MiB for btrfs, whose prober needs a region of at least
# 1 MiB) and copies every piece into fuzz/corpus/<target>/ for every
# target, so the fuzzers start from valid superblocks instead of noise.
# Needs root (loop device for LVM) and the mkfs tools; a missing tool is
# reported with its package and skipped.  Usage: fuzz/seed-corpus.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seeds="$work/seeds"
mkdir -p "$seeds"

need() { command -v "$1" >/dev/null || { echo "skip: $1 missing (apt-get install -y $2)" >&2; return 1; }; }
img() { rm -f "$work/$1.img"; truncate -s "$2" "$work/$1.img"; echo "$work/$1.img"; }
cut() { # name image [head KiB]: head (256 KiB default) and tail 256 KiB; small images whole
    local size
    size=$(stat -c %s "$2")
    if [ "$size" -le 524288 ]; then cp "$2" "$seeds/$1-whole"; return; fi
    dd if="$2" of="$seeds/$1-head" bs=1K count="${3:-256}" status=none
    dd if="$2" of="$seeds/$1-tail" bs=64K skip=$(( size / 65536 - 4 )) count=4 status=none
}
uuid=3b8c1c4e-5a43-4c5e-9b1f-0d2c7e6a9f10

if need mkfs.ext4 e2fsprogs; then
    for t in ext2 ext3 ext4; do
        i=$(img $t 8M); mkfs.$t -q -F -L seed -U $uuid "$i" && cut $t "$i"
    done
    i=$(img jbd 8M); mke2fs -q -F -O journal_dev -b 4096 "$i" && cut jbd "$i"
fi
if need mkfs.xfs xfsprogs; then
    i=$(img xfs 300M); mkfs.xfs -q -f -L seed -m uuid=$uuid "$i" && cut xfs "$i"
fi
if need mkfs.btrfs btrfs-progs; then
    i=$(img btrfs 128M); mkfs.btrfs -q -f -L seed -U $uuid "$i" >/dev/null 2>&1 && cut btrfs "$i" 1024 # blkid: btrfs needs >= 1 MiB
fi
if need mkfs.vfat dosfstools; then
    i=$(img fat16 16M); mkfs.vfat -F 16 -n SEED -i 1234abcd "$i" >/dev/null && cut fat16 "$i"
    i=$(img fat32 64M); mkfs.vfat -F 32 -n SEED -i 1234abcd "$i" >/dev/null && cut fat32 "$i"
fi
if need mkswap util-linux; then
    i=$(img swap 4M); mkswap -q -L seed -U $uuid "$i" && cut swap "$i"
fi
if need mkntfs ntfs-3g; then
    i=$(img ntfs 16M); mkntfs -q -F -Q -L seed "$i" >/dev/null 2>&1 && cut ntfs "$i"
fi
if need cryptsetup cryptsetup-bin; then
    for v in luks1 luks2; do
        i=$(img $v 32M)
        echo -n seedpass | cryptsetup luksFormat -q --type $v --pbkdf pbkdf2 \
            --pbkdf-force-iterations 1000 --uuid $uuid --key-file - "$i" && cut $v "$i"
    done
fi
if need mksquashfs squashfs-tools; then
    mkdir -p "$work/tree" && echo hello >"$work/tree/f"
    mksquashfs "$work/tree" "$work/sq.img" -noappend -quiet >/dev/null && cut squashfs "$work/sq.img"
fi
if need xorriso xorriso; then
    xorriso -as mkisofs -quiet -V SEED -o "$work/iso.img" "$work/tree" 2>/dev/null && cut iso9660 "$work/iso.img"
fi
if need pvcreate lvm2; then
    i=$(img lvm 8M)
    if dev=$(losetup --find --show "$i"); then
        LVM_SUPPRESS_FD_WARNINGS=1 pvcreate -q -ff -y --uuid 8Yf1ko-qSHc-Ghzq-4zEf-1H0P-bE7j-CBRd4Q --norestorefile "$dev" >/dev/null \
            && cut lvm2 "$i"
        losetup -d "$dev"
    fi
fi
if need sgdisk gdisk; then
    i=$(img gpt 8M); sgdisk -q -U $uuid -n 1:2048:+2M -t 1:8300 -n 2:0:0 -t 2:8e00 "$i" >/dev/null && cut gpt "$i"
fi
if need sfdisk fdisk; then
    i=$(img dos 8M)
    printf 'label: dos\nlabel-id: 0x1234abcd\n,2M,83\n,,5\n,1M,83\n,,8e\n' | sfdisk -q "$i" >/dev/null && cut dos "$i"
fi

for t in "$here"/fuzz_targets/*.rs; do
    t=$(basename "$t" .rs)
    mkdir -p "$here/corpus/$t"
    cp "$seeds"/* "$here/corpus/$t/"
done
echo "seeded $(ls "$seeds" | wc -l) inputs into $(ls "$here/fuzz_targets" | wc -l) corpora under $here/corpus"
