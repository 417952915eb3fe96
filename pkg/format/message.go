// SPDX-License-Identifier: Apache-2.0

package format

import "time"

// Message is one received application message, independent of the MQTT
// library and protocol version that delivered it.
type Message struct {
	Topic      string      // topic name the message was published to
	Payload    []byte      // application payload; may be empty or binary
	QoS        byte        // delivered QoS (0, 1 or 2)
	Retain     bool        // retain flag as delivered
	MID        uint16      // packet identifier; 0 for QoS 0
	Properties *Properties // MQTT 5 PUBLISH properties; nil for MQTT 3.1/3.1.1 or none
	Time       time.Time   // time the message was received (local time zone for output)
}

// Properties holds the MQTT 5 PUBLISH properties a subscriber can receive.
// A nil pointer or nil slice means the property was absent.
type Properties struct {
	PayloadFormat   *byte      // payload-format-indicator (0 bytes, 1 UTF-8)
	MessageExpiry   *uint32    // message-expiry-interval in seconds
	ContentType     string     // content-type; see HasContentType
	HasContentType  bool       // content-type was present (it may be empty)
	ResponseTopic   string     // response-topic; empty means absent
	CorrelationData []byte     // correlation-data; nil means absent
	SubscriptionIDs []int      // subscription-identifier values, in received order
	TopicAlias      *uint16    // topic-alias
	UserProps       []UserProp // user-property pairs, in received order (duplicates allowed)
}

// UserProp is one MQTT 5 user property (a UTF-8 string pair).
type UserProp struct {
	Key   string // property name
	Value string // property value
}

// empty reports whether p carries no property at all. mosquitto omits the
// JSON "properties" member in that case.
func (p *Properties) empty() bool {
	return p == nil || (p.PayloadFormat == nil && p.MessageExpiry == nil && !p.HasContentType &&
		p.ContentType == "" && p.ResponseTopic == "" && p.CorrelationData == nil &&
		len(p.SubscriptionIDs) == 0 && p.TopicAlias == nil && len(p.UserProps) == 0)
}

// contentType returns the content type and whether it is present.
func (p *Properties) contentType() (string, bool) {
	if p == nil {
		return "", false
	}
	return p.ContentType, p.HasContentType || p.ContentType != ""
}
