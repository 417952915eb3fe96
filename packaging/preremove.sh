#!/bin/sh
# Stop and disable the broker when the package is removed, not when it is
# upgraded: dpkg runs prerm with "remove" (removal) or "upgrade",
# "deconfigure", "failed-upgrade" (the service must keep its state); rpm
# runs %preun with the number of versions left after the transaction: 0 on
# removal, 1 or more on an upgrade.
set -e
case "$1" in
remove | purge | 0) ;;
*) exit 0 ;;
esac
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl stop mqttkit.service || true
	systemctl disable mqttkit.service || true
fi
