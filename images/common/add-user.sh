#!/bin/sh
# The unprivileged user every edgebench image runs as. The uid is the same in
# all images (10001), so the files the agent container writes are readable by
# the runner containers it starts. Written to /etc/passwd directly: minimal
# bases have no useradd.
set -eu
grep -q '^edgebench:' /etc/group || echo 'edgebench:x:10001:' >>/etc/group
grep -q '^edgebench:' /etc/passwd ||
  echo 'edgebench:x:10001:10001:edgebench:/home/edgebench:/usr/sbin/nologin' >>/etc/passwd
mkdir -p /home/edgebench
chown 10001:10001 /home/edgebench
