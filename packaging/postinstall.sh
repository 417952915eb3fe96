#!/bin/sh
set -e
mkdir -p /var/lib/mqttkit
chown mqttkit:mqttkit /var/lib/mqttkit
chmod 0750 /var/lib/mqttkit
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
