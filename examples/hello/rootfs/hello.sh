#!/bin/sh
# Runs as a HostProcess container: a plain host process, in a job, with its own volume.
echo "host name:        $(hostname)"
echo "host PID 1:       $(tr '\0' ' ' < /proc/1/cmdline | cut -c1-60)"
echo "network:          $(ls /sys/class/net | tr '\n' ' ')"
echo "account:          $(id)"
echo "job (cgroup):     $(grep -m1 -E '^0::|memory' /proc/self/cgroup)"
echo "volume:           $CONTAINER_SANDBOX_MOUNT_POINT"
echo "from the volume:  $(cat "$CONTAINER_SANDBOX_MOUNT_POINT/message.txt")"
