# SPDX-License-Identifier: Apache-2.0
# A QoS 1 subscriber that takes COUNT messages m1 ... mCOUNT (as
# `seq -f 'm%g' COUNT | mosquitto_pub -l` sends them) and says whether all
# came, in order; paho acknowledges each one as it is handled.
import argparse
import sys

import paho.mqtt.client as mqtt

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--count", type=int, required=True)
a = ap.parse_args()

got = []


def on_connect(c, userdata, flags, rc):
    c.subscribe(a.topic, 1)


def on_message(c, userdata, m):
    got.append(m.payload.decode())
    if len(got) >= a.count:
        c.disconnect()


c = mqtt.Client(client_id="burst-subscriber", clean_session=True)
c.on_connect = on_connect
c.on_message = on_message
c.connect("127.0.0.1", a.port, 60)
c.loop_forever()
want = ["m%d" % (i + 1) for i in range(a.count)]
if got == want:
    print("received %d in order" % len(got))
    sys.exit(0)
bad = next(i for i in range(len(got)) if got[i] != want[i])
print("received %d, message %d is %s" % (len(got), bad, got[bad]))
sys.exit(1)
