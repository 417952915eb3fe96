// SPDX-License-Identifier: Apache-2.0

package mqttpk

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Every packet type round-trips through mochi's encoder and Decode.
func TestDecodeRoundTrip(t *testing.T) {
	for _, in := range []packets.Packet{
		{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", PacketID: 7, Payload: []byte("x")},
		{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 7},
		{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: 8},
		{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 9},
		{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: 10},
		{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 11, Filters: packets.Subscriptions{{Filter: "a/#", Qos: 1}}},
		{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: 11, ReasonCodes: []byte{1}},
		{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 12, Filters: packets.Subscriptions{{Filter: "a/#"}}},
		{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}},
		{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}},
		{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}},
	} {
		in.ProtocolVersion = 4
		var buf bytes.Buffer
		err := Encode(&in, &buf)
		if err != nil {
			t.Fatalf("encode type %d: %v", in.FixedHeader.Type, err)
		}
		b := buf.Bytes()
		out := packets.Packet{ProtocolVersion: 4}
		if err := out.FixedHeader.Decode(b[0]); err != nil {
			t.Fatal(err)
		}
		body := b[2:] // every packet here is shorter than 128 bytes
		if err := Decode(&out, body); err != nil {
			t.Fatalf("decode type %d: %v", in.FixedHeader.Type, err)
		}
		if out.PacketID != in.PacketID || out.TopicName != in.TopicName || !bytes.Equal(out.Payload, in.Payload) ||
			len(out.Filters) != len(in.Filters) || !bytes.Equal(out.ReasonCodes, in.ReasonCodes) {
			t.Errorf("type %d: got %+v, want %+v", in.FixedHeader.Type, out, in)
		}
	}
	bad := packets.Packet{FixedHeader: packets.FixedHeader{Type: 0}}
	if err := Decode(&bad, nil); err == nil {
		t.Error("type 0 decoded without an error")
	}
}
