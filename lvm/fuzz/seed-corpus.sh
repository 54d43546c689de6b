#!/bin/bash
# Seeds the lvm fuzz corpora with real lvm2 output: a PV with two metadata
# areas in a VG with linear and striped LVs (first 1 MiB of the device for
# pv_label_mda, the vgcfgbackup text for metadata_text). Needs root, losetup
# and lvm2 (apt-get install -y lvm2). Usage: fuzz/seed-corpus.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
command -v lvm >/dev/null || { echo "lvm missing: apt-get install -y lvm2" >&2; exit 1; }
work=$(mktemp -d)
export LVM_SUPPRESS_FD_WARNINGS=1
truncate -s 64M "$work/a.img"
dev=$(losetup -f --show "$work/a.img")
trap 'losetup -d "$dev"; rm -rf "$work"' EXIT
vg=vg_seed$$
lvm pvcreate -q --driverloaded n --devices "$dev" --pvmetadatacopies 2 --metadatasize 64k "$dev"
lvm vgcreate -q --driverloaded n --devices "$dev" "$vg" "$dev"
lvm lvcreate -q --driverloaded n --devices "$dev" -an -Zn -L 8M -n root "$vg"
lvm lvcreate -q --driverloaded n --devices "$dev" -an -Zn -L 8M -n home "$vg"
lvm vgcfgbackup -q --driverloaded n --devices "$dev" -f "$work/backup" "$vg"
mkdir -p "$here/corpus/pv_label_mda" "$here/corpus/metadata_text"
dd if="$dev" of="$here/corpus/pv_label_mda/pv-head" bs=64K count=3 status=none
cp "$work/backup" "$here/corpus/metadata_text/vgcfgbackup"
# The raw text as stored in the metadata area.
off=$(( 4096 + 512 ))
dd if="$dev" bs=1 skip=$off count=4096 status=none | tr -d '\000' > "$here/corpus/metadata_text/mda-text"
echo "seeded $here/corpus"
