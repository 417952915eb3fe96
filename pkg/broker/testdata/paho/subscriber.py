# SPDX-License-Identifier: Apache-2.0
"""Course subscriber: prints "topic payload" for --count messages, then exits.
Prints "refused RC" and exits 2 when the broker refuses the connection."""
import sys

from common import args, client, rc_value

a = args("print messages")
c = client(a, "course-subscriber")
state = {"n": 0}


def on_connect(client, userdata, flags, rc, properties=None):
    if rc_value(rc) != 0:
        print("refused %s" % rc_value(rc), flush=True)
        client.disconnect()
        state["refused"] = True
        return
    client.subscribe(a.topic, qos=a.qos)


def on_subscribe(client, userdata, mid, granted, properties=None):
    print("subscribed %s" % [getattr(g, "value", g) for g in granted], flush=True)


def on_message(client, userdata, msg):
    print("%s %s" % (msg.topic, msg.payload.decode()), flush=True)
    state["n"] += 1
    if state["n"] >= a.count:
        client.disconnect()


c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect(a.host, a.port, 60)
c.loop_forever()
sys.exit(2 if state.get("refused") else 0)
