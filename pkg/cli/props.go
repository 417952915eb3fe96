// SPDX-License-Identifier: Apache-2.0

package cli

// -D / --property: MQTT 5 properties from the command line, with
// mosquitto's grammar and messages (reference/mosquitto.md §1.7):
//
//	-D <command> <property> <value>
//	-D <command> user-property <name> <value>
//
// urfave/cli gives a flag exactly one value, so joinPropertyArgs first
// folds the three or four words of each -D into one argument (joined by
// NUL, which cannot occur in argv). The flag value (propertyArgs) only
// collects them; parseProperties checks and converts them once all flags
// are known. Every client command (pub, sub) uses the same parser and
// names the packets it accepts.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// propSep joins the words of one -D occurrence.
const propSep = "\x00"

// propertyArgs is the value of the -D flag: the words of each occurrence.
type propertyArgs struct{ raw [][]string }

// aliasCopy is what urfave/cli sets on the other names of a flag after
// parsing (-D → --property); the multi-valued flags ignore it. It holds a
// NUL, so no argv element can be equal to it.
const aliasCopy = "\x00alias copy\x00"

func (p *propertyArgs) Set(s string) error {
	if s != aliasCopy {
		p.raw = append(p.raw, strings.Split(s, propSep))
	}
	return nil
}

// Serialize is what urfave/cli copies to the flag's other names.
func (p *propertyArgs) Serialize() string { return aliasCopy }

func (p *propertyArgs) String() string {
	if p == nil {
		return ""
	}
	parts := make([]string, len(p.raw))
	for i, r := range p.raw {
		parts[i] = strings.Join(r, " ")
	}
	return strings.Join(parts, ", ")
}

// propertyFlag declares -D/--property bound to p.
func propertyFlag(p *propertyArgs, usage string) cli.Flag {
	return &cli.GenericFlag{Name: "property", Aliases: []string{"D"}, Value: p, Usage: usage}
}

// joinPropertyArgs rewrites the argv of a client command so that each
// "-D cmd prop value" (four words for user-property) becomes "-D" and one
// NUL-joined value. It walks the arguments the way Go's flag package will,
// so a "-D" that is the value of another flag (-m -D) is left alone.
func joinPropertyArgs(cmds []*cli.Command, args []string) []string {
	i := commandIndex(args)
	cmd := commandOf(cmds, args)
	if cmd == nil || !hasFlag(cmd, "property") {
		return args
	}
	out := append([]string(nil), args[:i+1]...)
	for i++; i < len(args); {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			out = append(out, a)
			i++
			continue
		}
		if name == "D" || name == "property" {
			n := 3
			if i+2 < len(args) && strings.EqualFold(args[i+2], "user-property") {
				n = 4
			}
			end := min(i+1+n, len(args))
			// One spelling for all: urfave/cli refuses "two forms of the
			// same flag" (-D and --property) in one command line.
			out = append(out, "-D", strings.Join(args[i+1:end], propSep))
			i = end
			continue
		}
		out = append(out, a)
		i++
		if takesValue(cmd, name) && i < len(args) {
			out = append(out, args[i])
			i++
		}
	}
	return append(out, args[i:]...)
}

// commandIndex returns the index in args of the command name: args[0] is
// the program, and global flags (--help, --version) take no value.
func commandIndex(args []string) int {
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++
	}
	return i
}

// commandOf returns the command that args run, or nil when they name none.
func commandOf(cmds []*cli.Command, args []string) *cli.Command {
	i := commandIndex(args)
	if i >= len(args) {
		return nil
	}
	var cmd *cli.Command
	for _, c := range cmds {
		if c.HasName(args[i]) {
			cmd = c
		}
	}
	return cmd
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func takesValue(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				tv, ok := f.(interface{ TakesValue() bool })
				return ok && tv.TakesValue()
			}
		}
	}
	return false
}

// Packet kinds a -D command can name.
const (
	pkConnect = iota
	pkConnack
	pkPublish
	pkPuback
	pkPubrec
	pkPubrel
	pkPubcomp
	pkSubscribe
	pkSuback
	pkUnsubscribe
	pkUnsuback
	pkDisconnect
	pkAuth
	pkWill
)

var propCommands = lazy[map[string]int]{build: func() map[string]int {
	return map[string]int{
		"connect": pkConnect, "connack": pkConnack, "publish": pkPublish, "puback": pkPuback,
		"pubrec": pkPubrec, "pubrel": pkPubrel, "pubcomp": pkPubcomp, "subscribe": pkSubscribe,
		"suback": pkSuback, "unsubscribe": pkUnsubscribe, "unsuback": pkUnsuback,
		"disconnect": pkDisconnect, "auth": pkAuth, "will": pkWill,
	}
}}

// packetLabel is the packet name in "Error in X properties" messages.
var packetLabel = lazy[map[int]string]{build: func() map[int]string {
	return map[int]string{
		pkConnect: "CONNECT", pkPublish: "PUBLISH", pkSubscribe: "SUBSCRIBE",
		pkUnsubscribe: "UNSUBSCRIBE", pkDisconnect: "DISCONNECT", pkWill: "Will",
	}
}}

type propType int

const (
	ptByte propType = iota
	ptInt16
	ptInt32
	ptVarint
	ptString
	ptBinary
	ptPair
)

type propDef struct {
	typ  propType
	cmds []int // packets the MQTT 5 specification allows it in [MQTT-2.2.2.2]
}

var all = []int{pkConnect, pkConnack, pkPublish, pkPuback, pkPubrec, pkPubrel, pkPubcomp, pkSubscribe,
	pkSuback, pkUnsubscribe, pkUnsuback, pkDisconnect, pkAuth, pkWill}

var propDefs = lazy[map[string]propDef]{build: func() map[string]propDef {
	return map[string]propDef{
		"payload-format-indicator":          {ptByte, []int{pkPublish, pkWill}},
		"message-expiry-interval":           {ptInt32, []int{pkPublish, pkWill}},
		"content-type":                      {ptString, []int{pkPublish, pkWill}},
		"response-topic":                    {ptString, []int{pkPublish, pkWill}},
		"correlation-data":                  {ptBinary, []int{pkPublish, pkWill}},
		"subscription-identifier":           {ptVarint, []int{pkPublish, pkSubscribe}},
		"session-expiry-interval":           {ptInt32, []int{pkConnect, pkConnack, pkDisconnect}},
		"assigned-client-identifier":        {ptString, []int{pkConnack}},
		"server-keep-alive":                 {ptInt16, []int{pkConnack}},
		"authentication-method":             {ptString, []int{pkConnect, pkConnack, pkAuth}},
		"authentication-data":               {ptBinary, []int{pkConnect, pkConnack, pkAuth}},
		"request-problem-information":       {ptByte, []int{pkConnect}},
		"will-delay-interval":               {ptInt32, []int{pkWill}},
		"request-response-information":      {ptByte, []int{pkConnect}},
		"response-information":              {ptString, []int{pkConnack}},
		"server-reference":                  {ptString, []int{pkConnack, pkDisconnect}},
		"reason-string":                     {ptString, []int{pkConnack, pkPuback, pkPubrec, pkPubrel, pkPubcomp, pkSuback, pkUnsuback, pkDisconnect, pkAuth}},
		"receive-maximum":                   {ptInt16, []int{pkConnect, pkConnack}},
		"topic-alias-maximum":               {ptInt16, []int{pkConnect, pkConnack}},
		"topic-alias":                       {ptInt16, []int{pkPublish}},
		"maximum-qos":                       {ptByte, []int{pkConnack}},
		"retain-available":                  {ptByte, []int{pkConnack}},
		"user-property":                     {ptPair, all},
		"maximum-packet-size":               {ptInt32, []int{pkConnect, pkConnack}},
		"wildcard-subscription-available":   {ptByte, []int{pkConnack}},
		"subscription-identifier-available": {ptByte, []int{pkConnack}},
		"shared-subscription-available":     {ptByte, []int{pkConnack}},
	}
}}

// clientSends are the packets the clients send, so -D can fill them;
// every other packet is "not supported" (mosquitto's wording).
var clientSends = lazy[map[int]bool]{build: func() map[int]bool {
	return map[int]bool{pkConnect: true, pkPublish: true, pkSubscribe: true, pkUnsubscribe: true,
		pkDisconnect: true, pkWill: true}
}}

// SubscribeProperties are the MQTT 5 properties of a SUBSCRIBE.
type SubscribeProperties struct {
	SubscriptionID *int
	User           []client.UserProperty
}

// Properties are parsed -D arguments, grouped by the packet they go in.
// A nil field means no -D named that packet.
type Properties struct {
	Connect       *client.ConnectProperties // includes will-delay-interval
	SessionExpiry *uint32                   // -D connect session-expiry-interval
	Publish       *client.Properties
	Will          *client.Properties
	Subscribe     *SubscribeProperties
	Unsubscribe   []client.UserProperty
	Disconnect    *client.DisconnectProperties
}

// Empty reports whether no property was given.
func (p *Properties) Empty() bool {
	return p == nil || (p.Connect == nil && p.SessionExpiry == nil && p.Publish == nil && p.Will == nil &&
		p.Subscribe == nil && p.Unsubscribe == nil && p.Disconnect == nil)
}

// propsError is printed as is: mosquitto words these without "Error: ".
type propsError struct{ msg string }

func (e *propsError) Error() string    { return e.msg }
func (e *propsError) Verbatim() string { return e.msg }

// parseProperties checks and converts the -D words in raw. tool names the
// command for messages ("mqtt pub") and uses lists the packets it sends.
func parseProperties(raw [][]string, tool string, uses ...int) (*Properties, error) {
	p := &Properties{}
	seen := map[int]map[string]bool{}
	for _, words := range raw {
		if len(words) < 3 || (len(words) == 3 && strings.EqualFold(words[1], "user-property")) {
			return nil, usageErrorf("--property argument given but not enough arguments specified.")
		}
		cmdName, propName := strings.ToLower(words[0]), strings.ToLower(words[1])
		cmd, ok := propCommands.get()[cmdName]
		if !ok {
			return nil, usageErrorf("Invalid command given in --property argument.")
		}
		def, ok := propDefs.get()[propName]
		if !ok {
			return nil, usageErrorf("Invalid property name given in --property argument.")
		}
		allowed := false
		for _, c := range def.cmds {
			allowed = allowed || c == cmd
		}
		if !allowed {
			return nil, usageErrorf("%s property not allowed for %s in --property argument.", propName, cmdName)
		}
		if !clientSends.get()[cmd] || (cmd == pkPublish && propName == "subscription-identifier") {
			return nil, usageErrorf("%s property not supported for %s in --property argument.", propName, cmdName)
		}
		used := false
		for _, u := range uses {
			used = used || u == cmd
		}
		if !used {
			return nil, usageErrorf("%s properties cannot be used with %s.", cmdName, tool)
		}
		if propName != "user-property" {
			if seen[cmd] == nil {
				seen[cmd] = map[string]bool{}
			}
			if seen[cmd][propName] {
				return nil, &UsageError{Err: &propsError{fmt.Sprintf("Error in %s properties: Duplicate property in property list", packetLabel.get()[cmd])}}
			}
			seen[cmd][propName] = true
		}
		if err := p.set(cmd, propName, def.typ, words[2:]); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func protocolError(cmd int, why string) error {
	return &UsageError{Err: &propsError{fmt.Sprintf(
		"Error in %s properties: A network protocol error occurred when communicating with the broker. (%s)", packetLabel.get()[cmd], why)}}
}

// set converts one value and stores it in the packet's properties.
func (p *Properties) set(cmd int, name string, typ propType, vals []string) error {
	var n uint64
	var s string
	switch typ {
	case ptByte, ptInt16, ptInt32, ptVarint:
		limit := map[propType]uint64{ptByte: 255, ptInt16: 65535, ptInt32: 4294967295, ptVarint: 268435455}[typ]
		v, err := strconv.ParseInt(strings.TrimSpace(vals[0]), 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return usageErrorf("Property value (%s) is not a number for property %s.", vals[0], name)
		}
		if err != nil || v < 0 || uint64(v) > limit {
			return usageErrorf("Property value (%s) out of range for property %s.", vals[0], name)
		}
		n = uint64(v)
	case ptString, ptBinary:
		s = vals[0]
		if len(s) > 65535 {
			return usageErrorf("Property value for %s is %d bytes long, the maximum is 65535.", name, len(s))
		}
		if typ == ptString && !utf8.ValidString(s) {
			return usageErrorf("Property value for %s is not valid UTF-8.", name)
		}
	case ptPair:
		for _, v := range vals[:2] {
			if len(v) > 65535 {
				return usageErrorf("user-property name or value is %d bytes long, the maximum is 65535.", len(v))
			}
			if !utf8.ValidString(v) {
				return usageErrorf("user-property name or value is not valid UTF-8.")
			}
		}
	}
	b := byte(n)
	u16 := uint16(n)
	u32 := uint32(n)
	if typ == ptByte && b > 1 {
		return protocolError(cmd, name+" must be 0 or 1")
	}
	if (name == "receive-maximum" || name == "topic-alias" || name == "maximum-packet-size" || name == "subscription-identifier") && n == 0 {
		return protocolError(cmd, name+" must not be 0")
	}
	if name == "response-topic" && (s == "" || strings.ContainsAny(s, "+#")) {
		return protocolError(cmd, "response-topic must be a topic name without wildcards")
	}
	var user []client.UserProperty
	if typ == ptPair {
		user = []client.UserProperty{{Key: vals[0], Value: vals[1]}}
	}
	switch cmd {
	case pkConnect:
		if name == "session-expiry-interval" {
			p.SessionExpiry = &u32
			return nil
		}
		if p.Connect == nil {
			p.Connect = &client.ConnectProperties{}
		}
		c := p.Connect
		switch name {
		case "authentication-method":
			c.AuthMethod = s
		case "authentication-data":
			c.AuthData = []byte(s)
		case "request-problem-information":
			v := b == 1
			c.RequestProblemInfo = &v
		case "request-response-information":
			v := b == 1
			c.RequestRespInfo = &v
		case "receive-maximum":
			c.ReceiveMaximum = &u16
		case "topic-alias-maximum":
			c.TopicAliasMaximum = &u16
		case "maximum-packet-size":
			c.MaximumPacketSize = &u32
		case "user-property":
			c.User = append(c.User, user...)
		}
	case pkPublish, pkWill:
		if cmd == pkWill && name == "will-delay-interval" {
			if p.Connect == nil {
				p.Connect = &client.ConnectProperties{}
			}
			p.Connect.WillDelayInterval = &u32
			if p.Will == nil {
				p.Will = &client.Properties{}
			}
			return nil
		}
		dst := &p.Publish
		if cmd == pkWill {
			dst = &p.Will
		}
		if *dst == nil {
			*dst = &client.Properties{}
		}
		m := *dst
		switch name {
		case "payload-format-indicator":
			m.PayloadFormat = &b
		case "message-expiry-interval":
			m.MessageExpiry = &u32
		case "content-type":
			m.ContentType = s
		case "response-topic":
			m.ResponseTopic = s
		case "correlation-data":
			m.CorrelationData = []byte(s)
		case "topic-alias":
			m.TopicAlias = &u16
		case "user-property":
			m.User = append(m.User, user...)
		}
	case pkSubscribe:
		if p.Subscribe == nil {
			p.Subscribe = &SubscribeProperties{}
		}
		if name == "subscription-identifier" {
			id := int(n)
			p.Subscribe.SubscriptionID = &id
		} else {
			p.Subscribe.User = append(p.Subscribe.User, user...)
		}
	case pkUnsubscribe:
		p.Unsubscribe = append(p.Unsubscribe, user...)
	case pkDisconnect:
		if p.Disconnect == nil {
			p.Disconnect = &client.DisconnectProperties{}
		}
		d := p.Disconnect
		switch name {
		case "session-expiry-interval":
			d.SessionExpiry = &u32
		case "reason-string":
			d.ReasonString = s
		case "server-reference":
			d.ServerReference = s
		case "user-property":
			d.User = append(d.User, user...)
		}
	}
	return nil
}

// applyConnect puts the CONNECT and will properties into cfg. It fails when
// the protocol has no properties or will properties come without a will.
func (p *Properties) applyConnect(cfg *client.Config) error {
	if p.Empty() {
		return nil
	}
	if cfg.Version != client.V5 {
		return usageErrorf("-D/--property needs MQTT 5, but -V %s was given: MQTT 3.1 and 3.1.1 have no properties.",
			strings.TrimPrefix(cfg.Version.String(), "mqttv"))
	}
	// -D means MQTT 5, as in mosquitto: no silent retry with 3.1.1.
	cfg.Fallback311 = false
	if p.Will != nil {
		if cfg.Will == nil {
			return usageErrorf("Will properties given, but no will topic given.")
		}
		w := *cfg.Will
		w.Props = p.Will
		cfg.Will = &w
	}
	if p.SessionExpiry != nil {
		cfg.SessionExpiry = p.SessionExpiry
	}
	if p.Connect != nil {
		if cfg.ConnectProps == nil {
			cfg.ConnectProps = p.Connect
		} else {
			merged := *cfg.ConnectProps
			c := p.Connect
			for _, f := range []struct{ dst, src **uint16 }{{&merged.ReceiveMaximum, &c.ReceiveMaximum}, {&merged.TopicAliasMaximum, &c.TopicAliasMaximum}} {
				if *f.src != nil {
					*f.dst = *f.src
				}
			}
			if c.MaximumPacketSize != nil {
				merged.MaximumPacketSize = c.MaximumPacketSize
			}
			if c.RequestProblemInfo != nil {
				merged.RequestProblemInfo = c.RequestProblemInfo
			}
			if c.RequestRespInfo != nil {
				merged.RequestRespInfo = c.RequestRespInfo
			}
			if c.WillDelayInterval != nil {
				merged.WillDelayInterval = c.WillDelayInterval
			}
			if c.AuthMethod != "" {
				merged.AuthMethod = c.AuthMethod
			}
			if c.AuthData != nil {
				merged.AuthData = c.AuthData
			}
			merged.User = append(merged.User, c.User...)
			cfg.ConnectProps = &merged
		}
	}
	return nil
}
