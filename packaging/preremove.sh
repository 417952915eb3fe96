#!/bin/sh
set -e
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl stop mqttkit.service || true
	systemctl disable mqttkit.service || true
fi
