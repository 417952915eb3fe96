#!/bin/sh
# Create the unprivileged user the broker runs as (like the mosquitto package).
set -e
if ! getent group mqttkit >/dev/null 2>&1; then
	groupadd --system mqttkit 2>/dev/null || addgroup --system mqttkit
fi
if ! getent passwd mqttkit >/dev/null 2>&1; then
	useradd --system --gid mqttkit --home-dir /var/lib/mqttkit --shell /usr/sbin/nologin mqttkit 2>/dev/null ||
		adduser --system --ingroup mqttkit --home /var/lib/mqttkit --no-create-home --shell /usr/sbin/nologin mqttkit
fi
