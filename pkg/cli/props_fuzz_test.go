// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"strings"
	"testing"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// FuzzParseProperties feeds arbitrary -D arguments to the property parser:
// it must return properties or a usage error, never panic, and whatever it
// accepts must apply to a connection config without panicking.
func FuzzParseProperties(f *testing.F) {
	for _, s := range []string{
		"publish content-type text/plain",
		"publish user-property k v|publish user-property k v2",
		"connect session-expiry-interval 60",
		"publish payload-format-indicator 300",
		"publish message-expiry-interval -1",
		"will will-delay-interval 5|will content-type x",
		"connect receive-maximum 0",
		"publish response-topic a/#",
		"disconnect reason-string bye",
		"subscribe subscription-identifier 268435456",
		"PUBLISH Content-Type x",
		"connack foo bar",
		"publish correlation-data \x00\xff",
		"publish topic-alias 65536",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var raw [][]string
		for _, group := range strings.Split(s, "|") {
			raw = append(raw, strings.Fields(group))
		}
		for _, tool := range []string{"mqtt pub", "mqtt sub"} {
			p, err := parseProperties(raw, tool, pkConnect, pkPublish, pkSubscribe, pkUnsubscribe, pkDisconnect, pkWill)
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("empty error for %q", s)
				}
				continue
			}
			cfg := &client.Config{Version: client.V5, Will: &client.Message{Topic: "w"}}
			_ = p.applyConnect(cfg)
		}
	})
}
