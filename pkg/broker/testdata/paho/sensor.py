# SPDX-License-Identifier: Apache-2.0
"""Course sensor: publishes --count JSON temperature readings with loop_start."""
import json
import sys
import time

from common import args, client, rc_value

a = args("simulated temperature sensor")
c = client(a, "course-sensor")
connected = {}


def on_connect(client, userdata, flags, rc, properties=None):
    connected["rc"] = rc_value(rc)


c.on_connect = on_connect
c.connect(a.host, a.port, 60)
c.loop_start()
deadline = time.time() + 10
while "rc" not in connected and time.time() < deadline:
    time.sleep(0.01)
if connected.get("rc") != 0:
    print("connection refused: %s" % connected.get("rc"), file=sys.stderr)
    sys.exit(2)
for i in range(a.count):
    reading = {"sensor": "t1", "seq": i, "temperature": 20.0 + i / 10}
    c.publish(a.topic, json.dumps(reading), qos=a.qos).wait_for_publish(10)
c.disconnect()
c.loop_stop()
print("sent %d readings" % a.count)
