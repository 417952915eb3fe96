// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
	"testing"
)

// FuzzPacketReader feeds arbitrary bytes from a "broker" to the publishing
// stream's packet reader and decoders: they must return packets or errors,
// never panic or read out of bounds.
func FuzzPacketReader(f *testing.F) {
	for _, seed := range [][]byte{
		{0x20, 0x02, 0x00, 0x00},                         // CONNACK 3.1.1 accepted
		{0x20, 0x03, 0x00, 0x00, 0x00},                   // CONNACK 5, no properties
		{0x20, 0x06, 0x00, 0x87, 0x03, 0x21, 0x00, 0x14}, // CONNACK 5 refused, receive maximum
		{0x40, 0x02, 0x00, 0x01},                         // PUBACK
		{0x40, 0x04, 0x00, 0x01, 0x87, 0x00},             // PUBACK 5 not authorised
		{0x50, 0x02, 0x00, 0x02, 0x70, 0x02, 0x00, 0x02}, // PUBREC, PUBCOMP
		{0xd0, 0x00},                                        // PINGRESP
		{0xe0, 0x02, 0x8b, 0x00},                            // DISCONNECT server shutting down
		{0x40, 0xff, 0xff, 0xff, 0xff, 0x7f},                // malformed remaining length
		{0x40, 0x05, 0x00, 0x01, 0x87, 0x09, 0x1f},          // truncated property
		{0x20, 0xff, 0xff, 0xff, 0x7f},                      // CONNACK announcing 256 MB
		{0x32, 0x07, 0x00, 0x01, 't', 0x00, 0x01, 'h', 'i'}, // PUBLISH QoS 1
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pr := newPacketReader(bytes.NewReader(data))
		for i := 0; i < 64; i++ {
			first, body, err := pr.read()
			if err != nil {
				return
			}
			_ = first
			for _, v5 := range []bool{false, true} {
				_, _ = decodeAck(v5, body)
			}
			_, _, _ = readProps(body)
		}
	})
}
