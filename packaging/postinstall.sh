#!/bin/sh
# After an install or an upgrade: the state directory, systemd's view of the
# unit, and on an upgrade a restart of a running broker so it runs the new
# binary (dpkg runs postinst as "configure OLD-VERSION" on an upgrade and
# "configure" with no version on a first install; rpm runs %post with 2 or
# more on an upgrade, 1 on a first install). A first install leaves the
# service disabled: `systemctl enable --now mqttkit` starts it.
set -e
mkdir -p /var/lib/mqttkit
chown mqttkit:mqttkit /var/lib/mqttkit
chmod 0750 /var/lib/mqttkit
upgrade=false
case "$1" in
configure) [ -n "${2:-}" ] && upgrade=true ;;
[0-9]*) [ "$1" -ge 2 ] && upgrade=true ;;
esac
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = true ]; then
		systemctl try-restart mqttkit.service || true
	fi
fi
