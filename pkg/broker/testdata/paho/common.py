# SPDX-License-Identifier: Apache-2.0
"""Shared set-up of the course-style paho scripts: a client made the way
the course does it (username_pw_set, optional TLS), for paho-mqtt 1.x and 2.x."""
import argparse

import paho.mqtt.client as mqtt


def args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--cafile", help="CA file: connect with TLS")
    p.add_argument("--v5", action="store_true", help="MQTT 5 instead of 3.1.1")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--qos", type=int, default=1)
    return p.parse_args()


def client(a, client_id):
    protocol = mqtt.MQTTv5 if a.v5 else mqtt.MQTTv311
    kwargs = {"client_id": client_id, "protocol": protocol}
    if not a.v5:
        kwargs["clean_session"] = True
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, **kwargs)
    else:
        c = mqtt.Client(**kwargs)
    if a.username is not None:
        c.username_pw_set(a.username, a.password)
    if a.cafile:
        c.tls_set(ca_certs=a.cafile)
    return c


def rc_value(rc):
    """CONNACK code as a number, whatever paho hands over."""
    return getattr(rc, "value", rc)
