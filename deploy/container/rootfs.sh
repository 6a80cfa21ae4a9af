#!/bin/sh
# The container's whole file system, in DEST/image: the keygate binary, the
# shared libraries it loads (as ldd names them, at the same paths), a user
# and group `keygate` (10001) that owns /data, and /tmp. The Dockerfile runs
# it in its build stage; .ci/container runs it on the binary CI built.
#   rootfs.sh BINARY DEST
set -eu
binary=$1
image=$2/image
mkdir -p "$image/usr/local/bin" "$image/data" "$image/etc" "$image/tmp"
cp "$binary" "$image/usr/local/bin/keygate"
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
  cp --parents "$lib" "$image"
done
echo 'keygate:x:10001:10001:keygate:/data:/nonexistent' > "$image/etc/passwd"
echo 'keygate:x:10001:' > "$image/etc/group"
chown 10001:10001 "$image/data"
chmod 0700 "$image/data"
chmod 1777 "$image/tmp"
