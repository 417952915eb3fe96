// SPDX-License-Identifier: Apache-2.0

// Command mqtt is an MQTT broker, publisher, subscriber and password tool
// in one binary, compatible with mosquitto's.
package main

import (
	"os"

	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/cli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "broker" {
		broker.SmallStacks() // memory per connection (docs/design/connections.md)
	}
	os.Exit(cli.Main())
}
