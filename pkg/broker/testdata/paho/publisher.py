# SPDX-License-Identifier: Apache-2.0
"""Course publisher: connects, publishes --count messages and waits for each."""
import sys

from common import args, client, rc_value

a = args("publish a few messages")
c = client(a, "course-publisher")
result = {}


def on_connect(client, userdata, flags, rc, properties=None):
    result["rc"] = rc_value(rc)


c.on_connect = on_connect
c.connect(a.host, a.port, 60)
c.loop_start()
for i in range(a.count):
    info = c.publish(a.topic, "message %d" % i, qos=a.qos)
    info.wait_for_publish(10)
    if not info.is_published():
        print("publish %d not acknowledged" % i, file=sys.stderr)
        sys.exit(3)
c.disconnect()
c.loop_stop()
if result.get("rc") != 0:
    print("connection refused: %s" % result.get("rc"), file=sys.stderr)
    sys.exit(2)
print("published %d" % a.count)
