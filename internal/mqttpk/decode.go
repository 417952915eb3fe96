// SPDX-License-Identifier: Apache-2.0

// Package mqttpk holds what the broker, the bridge and the tests share
// about mochi's packet codec.
package mqttpk

import (
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Decode decodes body, the packet's bytes after its fixed header, into pk
// with mochi's decoder for pk.FixedHeader.Type (pk.ProtocolVersion set).
// PINGREQ and PINGRESP have no body to decode. A type MQTT does not define
// is an error. Callers decide which types they accept from their peer.
func Decode(pk *packets.Packet, body []byte) error {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		return pk.ConnectDecode(body)
	case packets.Connack:
		return pk.ConnackDecode(body)
	case packets.Publish:
		return pk.PublishDecode(body)
	case packets.Puback:
		return pk.PubackDecode(body)
	case packets.Pubrec:
		return pk.PubrecDecode(body)
	case packets.Pubrel:
		return pk.PubrelDecode(body)
	case packets.Pubcomp:
		return pk.PubcompDecode(body)
	case packets.Subscribe:
		return pk.SubscribeDecode(body)
	case packets.Suback:
		return pk.SubackDecode(body)
	case packets.Unsubscribe:
		return pk.UnsubscribeDecode(body)
	case packets.Unsuback:
		return pk.UnsubackDecode(body)
	case packets.Pingreq, packets.Pingresp:
		return nil
	case packets.Disconnect:
		return pk.DisconnectDecode(body)
	case packets.Auth:
		return pk.AuthDecode(body)
	}
	return fmt.Errorf("unknown packet type %d", pk.FixedHeader.Type)
}
