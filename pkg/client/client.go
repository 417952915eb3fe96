// SPDX-License-Identifier: Apache-2.0

// Package client is the MQTT client used by the mqtt commands: one small
// interface with an MQTT 5 implementation (paho.golang) and room for an
// MQTT 3.1/3.1.1 one behind the same interface.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Version is an MQTT protocol level as sent in CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// String returns the name mosquitto uses for the version.
func (v Version) String() string {
	switch v {
	case V31:
		return "mqttv31"
	case V311:
		return "mqttv311"
	case V5:
		return "mqttv5"
	}
	return "mqtt(" + strconv.Itoa(int(v)) + ")"
}

// ParseVersion accepts mosquitto's -V spellings: 5, mqttv5, 311, mqttv311, 31, mqttv31.
func ParseVersion(s string) (Version, error) {
	switch strings.ToLower(s) {
	case "5", "mqttv5":
		return V5, nil
	case "311", "mqttv311":
		return V311, nil
	case "31", "mqttv31":
		return V31, nil
	}
	return 0, fmt.Errorf("invalid protocol version %q (want 5, 311 or 31)", s)
}

// Config describes one connection to a broker.
type Config struct {
	Host     string
	Port     int
	Version  Version
	ClientID string // empty: the broker assigns one (3.1.1, 5)

	KeepAlive      uint16
	Username       string
	Password       string
	PasswordSet    bool          // send the password even when empty
	CleanStart     bool          // clean session / clean start
	SessionExpiry  *uint32       // MQTT 5 session expiry interval
	ConnectTimeout time.Duration // TCP, TLS and CONNACK together; 0 means 10 s

	// Transport is TCP (default), WebSocket or Unix.
	Transport Transport
	// WSPath is the HTTP path of WebSocket connections ("" means /mqtt).
	WSPath string
	// Socket is the unix socket path when Transport is Unix.
	Socket string
	// TLS, when set, wraps the connection in TLS (mqtts, wss). An empty
	// ServerName means Host.
	TLS *tls.Config
	// BindAddress is the local address to bind the socket to (-A).
	BindAddress string
	// NoDelay asks for TCP_NODELAY (mosquitto's --nodelay). It is always on
	// in Go; the field exists for option parity.
	NoDelay bool
	// Fallback311 lets Dial retry once with MQTT 3.1.1 when a broker
	// refuses MQTT 5 as an unacceptable protocol version. It applies only
	// when nothing MQTT 5 specific is configured.
	Fallback311 bool

	Will *Message

	// ManualAck leaves the acknowledgement (PUBACK, PUBREC) of received
	// QoS 1 and 2 messages to Message.Ack: a message the program has not
	// finished with stays unacknowledged, and a persistent session gets
	// it again on the next connection. Without it a message is
	// acknowledged when the handler returns.
	ManualAck bool

	// Trace, when set, is called with one line per MQTT packet sent or
	// received, in libmosquitto's -d wording ("Client (null) sending
	// CONNECT"). It may be called from several goroutines.
	Trace func(line string)

	// ConnectProps are extra MQTT 5 CONNECT properties.
	ConnectProps *ConnectProperties

	Log *slog.Logger
}

// Addr returns host:port, or the socket path for a unix socket.
func (c *Config) Addr() string {
	if c.Transport == Unix {
		return c.Socket
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// ConnectProperties are the MQTT 5 CONNECT properties a user may set.
type ConnectProperties struct {
	ReceiveMaximum     *uint16
	TopicAliasMaximum  *uint16
	MaximumPacketSize  *uint32
	RequestProblemInfo *bool
	RequestRespInfo    *bool
	WillDelayInterval  *uint32
	AuthMethod         string
	AuthData           []byte
	User               []UserProperty
}

// UserProperty is one MQTT 5 user property.
type UserProperty struct{ Key, Value string }

// Properties are the MQTT 5 properties of a PUBLISH.
type Properties struct {
	PayloadFormat   *byte
	MessageExpiry   *uint32
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	SubscriptionIDs []int
	TopicAlias      *uint16
	User            []UserProperty
}

// Message is an application message, sent or received.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	MID     uint16      // packet identifier (0 at QoS 0)
	Props   *Properties // MQTT 5 only
	Time    time.Time   // when it was received

	ack func() // set on received QoS 1/2 messages with Config.ManualAck
}

// Ack acknowledges a received message when the connection was made with
// Config.ManualAck (a no-op otherwise, at QoS 0, and for a message whose
// connection is gone). Acknowledgements go out in the order the messages
// arrived [MQTT-4.6.0-2]: acknowledge messages in the order received.
// Disconnect sends the acknowledgements made before it first.
func (m *Message) Ack() {
	if m.ack != nil {
		m.ack()
	}
}

// Subscription is one topic filter with its options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// SubscribeProperties are the MQTT 5 SUBSCRIBE properties (mosquitto's
// -D subscribe ...). MQTT 3.1/3.1.1 has none.
type SubscribeProperties struct {
	SubscriptionID *int // 1..268435455; the broker echoes it on matching messages
	User           []UserProperty
}

// Handler receives messages. It is called from one goroutine, in order;
// it must not block for long.
type Handler func(*Message)

// Client is a connected MQTT client.
type Client interface {
	// Publish sends m and, at QoS 1 and 2, waits for its acknowledgement.
	Publish(ctx context.Context, m *Message) error
	// Subscribe sends one SUBSCRIBE and returns the granted QoS or reason code per filter.
	Subscribe(ctx context.Context, subs []Subscription) ([]byte, error)
	// SubscribeProps is Subscribe with MQTT 5 SUBSCRIBE properties (props may be
	// nil; a 3.1/3.1.1 connection refuses non-nil properties).
	SubscribeProps(ctx context.Context, subs []Subscription, props *SubscribeProperties) ([]byte, error)
	// Unsubscribe sends one UNSUBSCRIBE for the filters.
	Unsubscribe(ctx context.Context, filters []string) error
	// UnsubscribeProps is Unsubscribe with MQTT 5 user properties (3.1/3.1.1
	// connections refuse them).
	UnsubscribeProps(ctx context.Context, filters []string, user []UserProperty) error
	// Disconnect sends DISCONNECT and closes the connection.
	Disconnect(ctx context.Context) error
	// DisconnectProps is Disconnect with MQTT 5 DISCONNECT properties (props
	// may be nil; MQTT 3.1/3.1.1 has none and ignores them).
	DisconnectProps(ctx context.Context, props *DisconnectProperties) error
	// Done is closed when the connection ends, for any reason.
	Done() <-chan struct{}
	// Err reports why the connection ended (nil after Disconnect).
	Err() error
	// ClientID is the client identifier in use (assigned by the broker if it chose one).
	ClientID() string
}

// DialFunc connects a client; commands take one so tests can replace it.
type DialFunc func(ctx context.Context, cfg *Config, h Handler) (Client, error)

// Dial connects to the broker with the protocol version in cfg. With
// Fallback311 set, an MQTT 5 CONNECT refused as an unacceptable protocol
// version is retried once with MQTT 3.1.1 (logged at debug level).
func Dial(ctx context.Context, cfg *Config, h Handler) (Client, error) {
	switch cfg.Version {
	case V5, 0:
		c, err := dialV5(ctx, cfg, h)
		var ce *ConnectError
		if err != nil && cfg.canFallback() && errors.As(err, &ce) && ce.Code == 132 {
			cfg.logger().Debug("broker refused MQTT 5, retrying with MQTT 3.1.1", "addr", cfg.Addr(), "error", ce.Error())
			c311 := *cfg
			c311.Version = V311
			return dialV3(ctx, &c311, h)
		}
		return c, err
	case V311, V31:
		return dialV3(ctx, cfg, h)
	}
	return nil, fmt.Errorf("unsupported protocol version %d", cfg.Version)
}

// canFallback reports whether the connection can be retried with MQTT
// 3.1.1 without losing anything the user asked for. Client-side limits
// (receive maximum, topic alias maximum, maximum packet size) have no
// 3.1.1 form and are dropped; anything else MQTT 5 only prevents it.
func (c *Config) canFallback() bool {
	if !c.Fallback311 || c.SessionExpiry != nil || (c.Will != nil && c.Will.Props != nil) {
		return false
	}
	if p := c.ConnectProps; p != nil && (p.RequestProblemInfo != nil || p.RequestRespInfo != nil ||
		p.WillDelayInterval != nil || p.AuthMethod != "" || p.AuthData != nil || len(p.User) > 0) {
		return false
	}
	return !(c.Username == "" && (c.Password != "" || c.PasswordSet))
}

// ErrPropsNeedV5 is returned when MQTT 5 properties are used on an MQTT
// 3.1/3.1.1 connection.
var ErrPropsNeedV5 = errors.New("MQTT 5 properties cannot be sent with MQTT 3.1/3.1.1")

// ErrNotConnected is returned when the connection was lost.
var ErrNotConnected = errors.New("the client is not currently connected")

// ConnectError is a CONNACK refusal.
type ConnectError struct {
	Version Version
	Code    byte   // CONNACK return code (3.x) or reason code (5)
	Reason  string // MQTT 5 reason string sent by the broker, if any
}

// Error returns mosquitto's wording for the refusal, without the
// "Connection error: " prefix.
func (e *ConnectError) Error() string {
	if e.Version != V5 {
		return connackText3(e.Code)
	}
	if e.Code == 132 {
		return "Unsupported Protocol Version. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode."
	}
	return ReasonText(e.Code)
}

// PublishError is a PUBACK or PUBREC with a failure reason code (MQTT 5).
type PublishError struct {
	Code   byte
	Reason string
}

func (e *PublishError) Error() string {
	s := ReasonText(e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func connackText3(code byte) string {
	switch code {
	case 1:
		return "Connection Refused: unacceptable protocol version."
	case 2:
		return "Connection Refused: identifier rejected."
	case 3:
		return "Connection Refused: broker unavailable."
	case 4:
		return "Connection Refused: bad user name or password."
	case 5:
		return "Connection Refused: not authorised."
	}
	return "Connection Refused: unknown reason."
}

// reasonTexts is indexed by reason code: an array literal is static data,
// where a map literal would be built at every start of the binary.
var reasonTexts = [256]string{
	0: "Success", 1: "Granted QoS 1", 2: "Granted QoS 2", 4: "Disconnect with Will Message",
	16: "No matching subscribers", 17: "No subscription existed",
	128: "Unspecified error", 129: "Malformed Packet", 130: "Protocol Error",
	131: "Implementation specific error", 132: "Unsupported Protocol Version",
	133: "Client Identifier not valid", 134: "Bad User Name or Password", 135: "Not authorized",
	136: "Server unavailable", 137: "Server busy", 138: "Banned", 139: "Server shutting down",
	140: "Bad authentication method", 141: "Keep Alive timeout", 142: "Session taken over",
	143: "Topic Filter invalid", 144: "Topic Name invalid", 145: "Packet Identifier in use",
	146: "Packet Identifier not found", 147: "Receive Maximum exceeded", 148: "Topic Alias invalid",
	149: "Packet too large", 150: "Message rate too high", 151: "Quota exceeded",
	152: "Administrative action", 153: "Payload format invalid", 154: "Retain not supported",
	155: "QoS not supported", 156: "Use another server", 157: "Server moved",
	158: "Shared Subscriptions not supported", 159: "Connection rate exceeded",
	160: "Maximum connect time", 161: "Subscription identifiers not supported",
	162: "Wildcard Subscriptions not supported",
}

// ReasonText returns the MQTT 5 reason string mosquitto prints for code.
func ReasonText(code byte) string {
	if s := reasonTexts[code]; s != "" {
		return s
	}
	return "Unknown reason"
}

// transportName names the transport for logs: tcp, tls, ws, wss or unix.
func (c *Config) transportName() string {
	switch {
	case c.Transport == Unix:
		return "unix"
	case c.Transport == WebSocket && c.TLS != nil:
		return "wss"
	case c.Transport == WebSocket:
		return "ws"
	case c.TLS != nil:
		return "tls"
	}
	return "tcp"
}

// version is the protocol version to speak: Version, or MQTT 5 when it
// is 0.
func (c *Config) version() Version {
	if c.Version == 0 {
		return V5
	}
	return c.Version
}

func (c *Config) timeout() time.Duration {
	if c.ConnectTimeout > 0 {
		return c.ConnectTimeout
	}
	return 10 * time.Second
}

func (c *Config) logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}
