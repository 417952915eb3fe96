// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// v5Client implements Client with paho.golang (MQTT 5).
type v5Client struct {
	c      *paho.Client
	cfg    *Config
	guard  *frameGuard
	done   chan struct{}
	failed chan struct{} // closed when err is first set

	mu  sync.Mutex
	err error
	bye bool

	// With Config.ManualAck: acks counts the acknowledgements paho has
	// written, marked those Message.Ack asked for (paho sends them in
	// batches, in order, from a timer).
	acks   *ackCounter
	marked atomic.Int64
}

// ackCounter counts the acknowledgements paho.golang sends through the
// session, so that Disconnect can wait until those asked for are out.
type ackCounter struct {
	session.SessionManager
	sent atomic.Int64
}

func (s *ackCounter) Ack(pb *packets.Publish) error {
	err := s.SessionManager.Ack(pb)
	s.sent.Add(1)
	return err
}

// manualAckInterval is how often paho.golang sends the acknowledgements
// made with Message.Ack (its default is 50 ms).
const manualAckInterval = 10 * time.Millisecond

func dialV5(ctx context.Context, cfg *Config, h Handler) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	log := cfg.logger()
	log.Debug("connecting", "addr", cfg.Addr(), "transport", cfg.transportName(), "version", V5.String(), "client_id", cfg.ClientID)
	conn, err := dialConn(ctx, cfg)
	if err != nil {
		return nil, err
	}
	vc := &v5Client{cfg: cfg, done: make(chan struct{}), failed: make(chan struct{})}
	guard := newFrameGuard(conn, incomingLimit(cfg))
	vc.guard = guard
	pc := paho.ClientConfig{
		Conn:          packets.NewThreadSafeConn(&bufferedConn{Conn: guard, r: bufio.NewReaderSize(guard, 32<<10)}),
		PacketTimeout: cfg.timeout(),
		OnClientError: func(err error) { vc.fail(guard.why(err)) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := ""
			if d.Properties != nil {
				reason = d.Properties.ReasonString
			}
			vc.fail(&DisconnectError{Code: d.ReasonCode, Reason: reason})
		},
	}
	var sess *state.State
	if cfg.ManualAck {
		// paho.golang does not close a session it did not create.
		sess = state.NewInMemory()
		vc.acks = &ackCounter{SessionManager: sess}
		pc.Session = vc.acks
		pc.EnableManualAcknowledgment = true
		pc.SendAcksInterval = manualAckInterval
	}
	if h != nil {
		pc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				m := fromPaho(pr.Packet)
				if cfg.ManualAck && pr.Packet.QoS > 0 {
					p := pr.Packet
					m.ack = func() {
						if vc.c.Ack(p) == nil {
							vc.marked.Add(1)
						}
					}
				}
				h(m)
				return true, nil
			},
		}
	}
	vc.c = paho.NewClient(pc)

	cp := &paho.Connect{
		ClientID:   cfg.ClientID,
		KeepAlive:  cfg.KeepAlive,
		CleanStart: cfg.CleanStart,
		Username:   cfg.Username,
		Password:   []byte(cfg.Password),
	}
	cp.UsernameFlag = cfg.Username != ""
	cp.PasswordFlag = cfg.Password != "" || cfg.PasswordSet
	props := &paho.ConnectProperties{SessionExpiryInterval: cfg.SessionExpiry, RequestProblemInfo: true}
	if p := cfg.ConnectProps; p != nil {
		props.ReceiveMaximum = p.ReceiveMaximum
		props.TopicAliasMaximum = p.TopicAliasMaximum
		props.MaximumPacketSize = p.MaximumPacketSize
		if p.RequestProblemInfo != nil {
			props.RequestProblemInfo = *p.RequestProblemInfo
		}
		if p.RequestRespInfo != nil {
			props.RequestResponseInfo = *p.RequestRespInfo
		}
		props.AuthMethod = p.AuthMethod
		props.AuthData = p.AuthData
		props.User = toPahoUser(p.User)
	}
	cp.Properties = props
	if w := cfg.Will; w != nil {
		cp.WillMessage = &paho.WillMessage{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain}
		wp := &paho.WillProperties{}
		if cfg.ConnectProps != nil {
			wp.WillDelayInterval = cfg.ConnectProps.WillDelayInterval
		}
		if p := w.Props; p != nil {
			wp.PayloadFormat = p.PayloadFormat
			wp.MessageExpiry = p.MessageExpiry
			wp.ContentType = p.ContentType
			wp.ResponseTopic = p.ResponseTopic
			wp.CorrelationData = p.CorrelationData
			wp.User = toPahoUser(p.User)
		}
		cp.WillProperties = wp
	}
	ca, err := vc.c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		if sess != nil {
			_ = sess.Close()
		}
		if gerr := guard.err(); gerr != nil {
			return nil, gerr
		}
		if ca != nil && ca.ReasonCode >= 0x80 {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, &ConnectError{Version: V5, Code: ca.ReasonCode, Reason: reason}
		}
		if rc := conn.v3Refusal(); rc != 0 {
			// An MQTT 3.1.1 broker answers a CONNECT it cannot speak
			// with return code 1 [MQTT-3.1.2-2]; paho.golang cannot
			// parse that short CONNACK.
			log.Debug("broker answered with an MQTT 3.1.1 CONNACK", "return_code", rc)
			if rc == 1 {
				return nil, &ConnectError{Version: V5, Code: 132}
			}
			return nil, &ConnectError{Version: V311, Code: rc}
		}
		return nil, connackErr(ctx, cfg, conn, err)
	}
	if ca.Properties != nil && ca.Properties.AssignedClientID != "" {
		log.Debug("broker assigned client id", "client_id", ca.Properties.AssignedClientID)
	}
	go func() {
		<-vc.c.Done()
		if sess != nil {
			_ = sess.Close()
		}
		// paho closes the connection first and reports why (OnClientError,
		// OnServerDisconnect) from another goroutine afterwards: give the
		// reason a moment to arrive so Err names it.
		vc.mu.Lock()
		bye := vc.bye
		vc.mu.Unlock()
		if !bye {
			select {
			case <-vc.failed:
			case <-time.After(250 * time.Millisecond):
			}
		}
		vc.fail(ErrNotConnected)
		close(vc.done)
	}()
	log.Debug("connected", "addr", cfg.Addr(), "client_id", vc.c.ClientID())
	return vc, nil
}

// DisconnectError is a DISCONNECT sent by the server (MQTT 5).
type DisconnectError struct {
	Code   byte
	Reason string
}

func (e *DisconnectError) Error() string {
	s := "disconnected by the broker: " + ReasonText(e.Code)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

func (vc *v5Client) fail(err error) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.err == nil && !vc.bye {
		vc.err = err
		close(vc.failed)
	}
}

func (vc *v5Client) Err() error {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.bye {
		return nil
	}
	return vc.err
}

func (vc *v5Client) Done() <-chan struct{} { return vc.done }
func (vc *v5Client) ClientID() string      { return vc.c.ClientID() }

func (vc *v5Client) Publish(ctx context.Context, m *Message) error {
	p := &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Properties: toPahoProps(m.Props)}
	resp, err := vc.c.Publish(ctx, p)
	if resp != nil && resp.ReasonCode >= 0x80 {
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		return &PublishError{Code: resp.ReasonCode, Reason: reason}
	}
	if err != nil {
		if e := vc.Err(); e != nil {
			return e
		}
		return err
	}
	return nil
}

func (vc *v5Client) Subscribe(ctx context.Context, subs []Subscription) ([]byte, error) {
	return vc.SubscribeProps(ctx, subs, nil)
}

func (vc *v5Client) SubscribeProps(ctx context.Context, subs []Subscription, props *SubscribeProperties) ([]byte, error) {
	s := &paho.Subscribe{}
	if props != nil {
		s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: props.SubscriptionID, User: toPahoUser(props.User)}
	}
	for _, sub := range subs {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{
			Topic: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling,
		})
	}
	var sa *paho.Suback
	err := vc.whileConnected(ctx, func(ctx context.Context) (err error) {
		sa, err = vc.c.Subscribe(ctx, s)
		return err
	})
	if sa != nil {
		return sa.Reasons, nil
	}
	return nil, err
}

// whileConnected runs f with a context that also ends when the connection
// does, and then names why it ended: paho.golang's Subscribe and
// Unsubscribe wait for their acknowledgement until the context ends, even
// after the broker hung up (sub waited for ever).
func (vc *v5Client) whileConnected(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-vc.failed:
		case <-vc.guard.dead:
		case <-ctx.Done():
		}
		cancel()
	}()
	err := f(ctx)
	if err != nil {
		if e := vc.guard.err(); e != nil {
			return e
		}
		if e := vc.Err(); e != nil {
			return e
		}
		if e := vc.guard.lost(); e != nil {
			return e
		}
	}
	return err
}

func (vc *v5Client) Unsubscribe(ctx context.Context, filters []string) error {
	return vc.UnsubscribeProps(ctx, filters, nil)
}

func (vc *v5Client) UnsubscribeProps(ctx context.Context, filters []string, user []UserProperty) error {
	u := &paho.Unsubscribe{Topics: filters}
	if len(user) > 0 {
		u.Properties = &paho.UnsubscribeProperties{User: toPahoUser(user)}
	}
	return vc.whileConnected(ctx, func(ctx context.Context) error {
		_, err := vc.c.Unsubscribe(ctx, u)
		return err
	})
}

func (vc *v5Client) Disconnect(ctx context.Context) error {
	return vc.DisconnectProps(ctx, nil)
}

func (vc *v5Client) DisconnectProps(ctx context.Context, props *DisconnectProperties) error {
	vc.mu.Lock()
	vc.bye = true
	vc.mu.Unlock()
	vc.waitAcks(ctx)
	vc.guard.bye.Store(true)
	d := &paho.Disconnect{ReasonCode: 0}
	if props != nil {
		d.Properties = &paho.DisconnectProperties{SessionExpiryInterval: props.SessionExpiry,
			ReasonString: props.ReasonString, ServerReference: props.ServerReference, User: toPahoUser(props.User)}
	}
	err := vc.c.Disconnect(d)
	select {
	case <-vc.done:
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	return err
}

// waitAcks waits (at most 1 s) until the acknowledgements asked for with
// Message.Ack were written: paho.golang sends them from a timer, and a
// DISCONNECT sent first would leave the last printed messages
// unacknowledged (sent again to a persistent session).
func (vc *v5Client) waitAcks(ctx context.Context) {
	if vc.acks == nil {
		return
	}
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for vc.acks.sent.Load() < vc.marked.Load() {
		select {
		case <-tick.C:
		case <-vc.c.Done():
			return
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		}
	}
}

func toPahoUser(u []UserProperty) paho.UserProperties {
	if len(u) == 0 {
		return nil
	}
	out := make(paho.UserProperties, len(u))
	for i, p := range u {
		out[i] = paho.UserProperty{Key: p.Key, Value: p.Value}
	}
	return out
}

func toPahoProps(p *Properties) *paho.PublishProperties {
	if p == nil {
		return nil
	}
	return &paho.PublishProperties{
		PayloadFormat: p.PayloadFormat, MessageExpiry: p.MessageExpiry, ContentType: p.ContentType,
		ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData, TopicAlias: p.TopicAlias,
		User: toPahoUser(p.User),
	}
}

func fromPaho(p *paho.Publish) *Message {
	m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, MID: p.PacketID, Time: time.Now()}
	if pp := p.Properties; pp != nil {
		props := &Properties{
			PayloadFormat: pp.PayloadFormat, MessageExpiry: pp.MessageExpiry, ContentType: pp.ContentType,
			ResponseTopic: pp.ResponseTopic, CorrelationData: pp.CorrelationData, TopicAlias: pp.TopicAlias,
		}
		if pp.SubscriptionIdentifier != nil {
			props.SubscriptionIDs = []int{*pp.SubscriptionIdentifier}
		}
		for _, u := range pp.User {
			props.User = append(props.User, UserProperty(u))
		}
		if props.PayloadFormat != nil || props.MessageExpiry != nil || props.ContentType != "" ||
			props.ResponseTopic != "" || props.CorrelationData != nil || props.TopicAlias != nil ||
			props.SubscriptionIDs != nil || props.User != nil {
			m.Props = props
		}
	}
	return m
}

// bufferedConn buffers reads: paho reads each packet with several small
// reads (first byte, each length byte, body), one system call each on a
// bare socket. With a buffer a subscriber under load needs about one read
// per socket buffer instead of three or more per message.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
