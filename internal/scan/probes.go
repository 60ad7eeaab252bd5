package scan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"
)

// hello returns a ClientHello for version v (SSL 3.0 to TLS 1.2) offering
// suites, with the extensions a current client sends; SSL 3.0 gets none.
func (s *scanner) hello(v uint16, suites []uint16) *clientHello {
	h := &clientHello{version: v, suites: suites}
	rand.Read(h.random[:])
	if v == VersionSSL3 {
		h.recordVersion = VersionSSL3
		h.suites = append(slices.Clip(suites), scsvRenegotiation)
		return h
	}
	h.serverName = s.t.ServerName()
	h.groups = groupIDs(true)
	h.pointFormats = true
	h.renegInfo = true
	h.ems = true
	if v >= VersionTLS12 {
		h.sigAlgs = sigAlgs
	}
	return h
}

// hello13 returns a TLS 1.3 ClientHello offering suites and groups with an
// empty key_share: a server that accepts answers with a
// HelloRetryRequest naming its group, which is all a probe needs, and no
// key is ever computed.
func (s *scanner) hello13(suites, groups []uint16) *clientHello {
	h := &clientHello{
		version:    VersionTLS12,
		suites:     suites,
		serverName: s.t.ServerName(),
		groups:     groups,
		sigAlgs:    sigAlgs,
		versions:   []uint16{VersionTLS13},
		keyShare:   true,
		sessionID:  make([]byte, 32),
	}
	rand.Read(h.random[:])
	rand.Read(h.sessionID)
	return h
}

// candidates returns the code points of the suites defined for version v.
func candidates(v uint16) []uint16 {
	var ids []uint16
	for _, s := range legacySuites {
		if v >= VersionTLS12 || !s.TLS12 {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func ids13() []uint16 {
	var ids []uint16
	for _, s := range tls13Suites {
		ids = append(ids, s.ID)
	}
	return ids
}

var probedVersions = []uint16{VersionSSL2, VersionSSL3, VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13}

// protocols probes every version at once, offering every suite.
func (s *scanner) protocols(ctx context.Context) {
	s.rep.Protocols = make([]Protocol, len(probedVersions))
	var wg sync.WaitGroup
	for i, v := range probedVersions {
		p := &s.rep.Protocols[i]
		p.Name, p.Version = VersionName(v), v
		wg.Go(func() {
			switch v {
			case VersionSSL2:
				s.probeSSL2(ctx, p)
			case VersionTLS13:
				resp, err := s.p.exchange(ctx, s.hello13(ids13(), groupIDs(false)).marshal(), 0, false)
				s.judge(p, resp, err)
			default:
				resp, err := s.p.exchange(ctx, s.hello(v, candidates(v)).marshal(), msgCertificate, false)
				s.judge(p, resp, err)
				if p.Supported == Yes && resp.msgs[msgCertificate] != nil {
					if certs, err := parseCertificateMsg(resp.msgs[msgCertificate]); err == nil {
						s.mu.Lock()
						if s.certDER == nil || v == VersionTLS12 {
							s.certDER = certs
						}
						s.mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
}

// judge sets p.Supported from the answer to a hello for p.Version.
func (s *scanner) judge(p *Protocol, resp *response, err error) {
	switch {
	case err != nil:
		p.Supported, p.Detail = statusOf(err)
	case resp.refused():
		p.Supported, p.Detail = No, resp.why()
	case resp.hello.selectedVersion != p.Version:
		p.Supported, p.Detail = No, "server chose "+VersionName(resp.hello.selectedVersion)
	default:
		p.Supported = Yes
	}
}

func (s *scanner) probeSSL2(ctx context.Context, p *Protocol) {
	resp, err := s.p.exchangeSSL2(ctx)
	switch {
	case err != nil:
		p.Supported, p.Detail = statusOf(err)
	case resp.hello == nil:
		p.Supported, p.Detail = No, resp.why
	default:
		p.Supported = Yes
		for _, c := range resp.hello.ciphers {
			p.SSL2Ciphers = append(p.SSL2Ciphers, ssl2CipherName(c))
		}
		if len(p.SSL2Ciphers) == 0 {
			p.Detail = "the server answered but offered no cipher"
		}
	}
}

// suites enumerates, for each supported version up to TLS 1.2, every
// suite the server accepts: offer all, note the one chosen, offer the
// rest, until the server refuses. A server that enforces its own order
// thereby lists them in that order; offering the accepted suites reversed
// tells whether it does.
func (s *scanner) suites(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range s.rep.Protocols {
		p := &s.rep.Protocols[i]
		if p.Supported != Yes || p.Version == VersionSSL2 || p.Version == VersionTLS13 {
			continue
		}
		wg.Go(func() {
			offered := candidates(p.Version)
			for len(offered) > 0 {
				resp, err := s.p.exchange(ctx, s.hello(p.Version, offered).marshal(), 0, false)
				if err != nil {
					_, p.Incomplete = statusOf(err)
					return
				}
				if resp.refused() || resp.hello.selectedVersion != p.Version {
					break
				}
				id := resp.hello.suite
				i := slices.Index(offered, id)
				if i < 0 {
					p.Incomplete = fmt.Sprintf("the server chose suite 0x%04X, which was not offered", id)
					break
				}
				offered = slices.Delete(offered, i, i+1)
				p.Suites = append(p.Suites, LookupSuite(id))
			}
			p.Order = s.order(ctx, p.Suites, func(ids []uint16) []byte { return s.hello(p.Version, ids).marshal() })
		})
	}
	wg.Wait()
}

// order offers the accepted suites in their found order and reversed, and
// says whose preference the server follows.
func (s *scanner) order(ctx context.Context, found []Suite, hello func([]uint16) []byte) string {
	if len(found) < 2 {
		return ""
	}
	var ids []uint16
	for _, f := range found {
		ids = append(ids, f.ID)
	}
	pick := func(ids []uint16) (uint16, bool) {
		resp, err := s.p.exchange(ctx, hello(ids), 0, false)
		if err != nil || resp.refused() {
			return 0, false
		}
		return resp.hello.suite, true
	}
	first, ok1 := pick(ids)
	slices.Reverse(ids)
	second, ok2 := pick(ids)
	switch {
	case !ok1 || !ok2:
		return ""
	case first == found[0].ID && second == found[0].ID:
		return "server"
	case first == found[0].ID && second == ids[0]:
		return "client"
	}
	return "mixed"
}

// tls13Suites offers the TLS 1.3 suites one at a time.
func (s *scanner) tls13Suites(ctx context.Context) {
	p := s.protocol(VersionTLS13)
	if p == nil || p.Supported != Yes {
		return
	}
	accepted := make([]bool, len(tls13Suites))
	var failed error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, suite := range tls13Suites {
		wg.Go(func() {
			resp, err := s.p.exchange(ctx, s.hello13([]uint16{suite.ID}, groupIDs(false)).marshal(), 0, false)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failed = err
			case !resp.refused() && resp.hello.selectedVersion == VersionTLS13 && resp.hello.suite == suite.ID:
				accepted[i] = true
			}
		})
	}
	wg.Wait()
	if failed != nil {
		_, p.Incomplete = statusOf(failed)
	}
	var found []Suite
	for i, ok := range accepted {
		if ok {
			found = append(found, tls13Suites[i])
		}
	}
	// Put them in the order the server picks them when offered all.
	p.Order = s.order(ctx, found, func(ids []uint16) []byte { return s.hello13(ids, groupIDs(false)).marshal() })
	if p.Order == "server" {
		ordered := make([]Suite, 0, len(found))
		rest := slices.Clone(found)
		for len(rest) > 0 {
			ids := make([]uint16, len(rest))
			for i, r := range rest {
				ids[i] = r.ID
			}
			resp, err := s.p.exchange(ctx, s.hello13(ids, groupIDs(false)).marshal(), 0, false)
			if err != nil || resp.refused() {
				break
			}
			i := slices.IndexFunc(rest, func(r Suite) bool { return r.ID == resp.hello.suite })
			if i < 0 {
				break
			}
			ordered = append(ordered, rest[i])
			rest = slices.Delete(rest, i, i+1)
		}
		found = append(ordered, rest...)
	}
	p.Suites = found
}

// group returns the report entry for group id, adding it if needed.
func (s *scanner) group(id uint16) *GroupSupport {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.rep.Groups {
		if s.rep.Groups[i].ID == id {
			return &s.rep.Groups[i]
		}
	}
	panic("scan: group not in report")
}

func (s *scanner) initGroups() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rep.Groups != nil {
		return
	}
	for _, g := range groups {
		s.rep.Groups = append(s.rep.Groups, GroupSupport{Name: g.Name, ID: g.ID, TLS13: NotApplic, TLS12: NotApplic})
	}
}

// tls13Groups offers each group alone in TLS 1.3, with no key share: a
// HelloRetryRequest for it means the server accepts it.
func (s *scanner) tls13Groups(ctx context.Context) {
	s.initGroups()
	p := s.protocol(VersionTLS13)
	if p == nil || p.Supported != Yes {
		return
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			resp, err := s.p.exchange(ctx, s.hello13(ids13(), []uint16{g.ID}).marshal(), 0, false)
			st := No
			switch {
			case err != nil:
				st, _ = statusOf(err)
			case !resp.refused() && resp.hello.selectedVersion == VersionTLS13 && resp.hello.group == g.ID:
				st = Yes
			}
			gs := s.group(g.ID)
			s.mu.Lock()
			gs.TLS13 = st
			s.mu.Unlock()
		})
	}
	wg.Go(func() {
		resp, err := s.p.exchange(ctx, s.hello13(ids13(), groupIDs(false)).marshal(), 0, false)
		if err == nil && !resp.refused() && resp.hello.group != 0 {
			s.mu.Lock()
			s.rep.PreferredGroup = LookupGroup(resp.hello.group).Name
			s.mu.Unlock()
		}
	})
	wg.Wait()
}

// bestLegacy returns the highest version up to TLS 1.2 the server accepts
// and its suites, or 0.
func (s *scanner) bestLegacy(accept func(Suite) bool) (uint16, []uint16) {
	for _, v := range s.supported() {
		if v == VersionTLS13 || v == VersionSSL2 {
			continue
		}
		var ids []uint16
		for _, suite := range s.protocol(v).Suites {
			if accept == nil || accept(suite) {
				ids = append(ids, suite.ID)
			}
		}
		if len(ids) > 0 {
			return v, ids
		}
	}
	return 0, nil
}

// tls12Groups offers the accepted ECDHE suites with one curve at a time.
// In TLS 1.2 the client's curves also bind an ECDSA certificate's curve
// (RFC 8422, 5.1): a server with only ECDSA suites refuses a hello that
// leaves its certificate's curve out. So ECDHE_RSA suites are used if the
// server has any; otherwise the certificate's curve is offered after the
// probed one, and the ServerKeyExchange says which the server used.
func (s *scanner) tls12Groups(ctx context.Context) {
	s.initGroups()
	v, ecdhe := s.bestLegacy(func(su Suite) bool { return su.Kex == "ECDHE" && su.Auth != "ECDSA" })
	var certCurve uint16
	if v == 0 {
		v, ecdhe = s.bestLegacy(func(su Suite) bool { return su.Kex == "ECDHE" })
		certCurve = s.certCurve()
	}
	if v == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		if g.TLS13Only || g.FFDHE {
			continue
		}
		wg.Go(func() {
			h := s.hello(v, ecdhe)
			h.groups = []uint16{g.ID}
			if certCurve != 0 && certCurve != g.ID {
				h.groups = append(h.groups, certCurve)
			}
			resp, err := s.p.exchange(ctx, h.marshal(), msgServerKeyExchange, false)
			st := No
			switch {
			case err != nil:
				st, _ = statusOf(err)
			case !resp.refused() && LookupSuite(resp.hello.suite).Kex == "ECDHE":
				st = Yes
				if ske := resp.msgs[msgServerKeyExchange]; ske != nil {
					if c, err := parseECDHEKeyExchange(ske); err == nil && c != g.ID {
						st = No // the server used another curve than the one offered
					}
				}
			}
			gs := s.group(g.ID)
			s.mu.Lock()
			gs.TLS12 = st
			s.mu.Unlock()
		})
	}
	wg.Wait()
}

// certCurve returns the group of the curve of the ECDSA certificate the
// protocol probes read, or 0.
func (s *scanner) certCurve() uint16 {
	s.mu.Lock()
	der := s.certDER
	s.mu.Unlock()
	if len(der) == 0 {
		return 0
	}
	cert, err := x509.ParseCertificate(der[0])
	if err != nil {
		return 0
	}
	k, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return 0
	}
	switch k.Curve {
	case elliptic.P256():
		return 0x0017
	case elliptic.P384():
		return 0x0018
	case elliptic.P521():
		return 0x0019
	}
	return 0
}

// dhParams reads the DHE prime's size from the ServerKeyExchange, offering
// only elliptic curves so that the server uses its own parameters.
func (s *scanner) dhParams(ctx context.Context) {
	v, dhe := s.bestLegacy(func(su Suite) bool { return su.Kex == "DHE" })
	if v == 0 {
		return
	}
	h := s.hello(v, dhe)
	if h.groups != nil {
		h.groups = slices.DeleteFunc(slices.Clone(h.groups), func(id uint16) bool { return LookupGroup(id).FFDHE })
	}
	resp, err := s.p.exchange(ctx, h.marshal(), msgServerKeyExchange, false)
	if err != nil || resp.refused() {
		return
	}
	if bits, err := parseDHEKeyExchange(resp.msgs[msgServerKeyExchange]); err == nil {
		s.rep.DHBits = bits
	}
}

// checks runs the classic checks.
func (s *scanner) checks(ctx context.Context) {
	var reneg, comp, fallback, bleed Check
	parallel(
		func() { reneg = s.renegotiation(ctx) },
		func() { comp = s.compression(ctx) },
		func() { fallback = s.fallback(ctx) },
		func() { bleed = s.heartbleed(ctx) },
	)
	s.rep.Checks = []Check{reneg, comp, fallback, bleed}
}

func (s *scanner) renegotiation(ctx context.Context) Check {
	c := Check{ID: "secure_renegotiation", Title: "Secure renegotiation supported (RFC 5746)"}
	v, ids := s.bestLegacy(nil)
	if v == 0 {
		c.Result, c.OK, c.Detail = NotApplic, true, "no protocol below TLS 1.3 (TLS 1.3 has no renegotiation)"
		return c
	}
	resp, err := s.p.exchange(ctx, s.hello(v, ids).marshal(), 0, false)
	switch {
	case err != nil:
		c.Result, c.Detail = statusOf(err)
	case resp.refused():
		c.Result, c.Detail = Failed, "the server refused a hello it accepted before: "+resp.why()
	default:
		_, ok := resp.hello.ext(extRenegotiationInfo)
		if ok {
			c.Result, c.OK, c.Detail = Yes, true, "renegotiation_info answered in "+VersionName(v)
		} else {
			c.Result, c.Detail = No, "no renegotiation_info in the ServerHello ("+VersionName(v)+")"
		}
	}
	return c
}

func (s *scanner) compression(ctx context.Context) Check {
	c := Check{ID: "compression", Title: "TLS compression enabled (CRIME)"}
	v, ids := s.bestLegacy(nil)
	if v == 0 {
		c.Result, c.OK, c.Detail = NotApplic, true, "no protocol below TLS 1.3 (TLS 1.3 has no compression)"
		return c
	}
	h := s.hello(v, ids)
	h.compression = []uint8{1, 0} // DEFLATE first
	resp, err := s.p.exchange(ctx, h.marshal(), 0, false)
	switch {
	case err != nil:
		c.Result, c.Detail = statusOf(err)
	case resp.refused():
		c.Result, c.Detail = Failed, "the server refused a hello offering DEFLATE: "+resp.why()
	case resp.hello.compression != 0:
		c.Result, c.Detail = Yes, fmt.Sprintf("the server chose compression method %d in %s", resp.hello.compression, VersionName(v))
	default:
		c.Result, c.OK, c.Detail = No, true, "DEFLATE offered and declined"
	}
	return c
}

func (s *scanner) fallback(ctx context.Context) Check {
	c := Check{ID: "fallback_scsv", Title: "Downgrade protection (TLS_FALLBACK_SCSV honoured)"}
	vs := s.supported()
	vs = slices.DeleteFunc(vs, func(v uint16) bool { return v == VersionSSL2 })
	if len(vs) < 2 {
		c.Result, c.OK, c.Detail = NotApplic, true, "only one protocol version: nothing to fall back to"
		return c
	}
	v := vs[1] // a client falling back from the best version
	_, ids := s.bestLegacy(nil)
	if p := s.protocol(v); len(p.Suites) > 0 {
		ids = nil
		for _, su := range p.Suites {
			ids = append(ids, su.ID)
		}
	}
	h := s.hello(v, append(slices.Clone(ids), scsvFallback))
	resp, err := s.p.exchange(ctx, h.marshal(), 0, false)
	switch {
	case err != nil:
		c.Result, c.Detail = statusOf(err)
	case resp.alert && resp.alertMsg == alertInappropriateFallback:
		c.Result, c.OK, c.Detail = Yes, true, "inappropriate_fallback to "+VersionName(v)+" with the SCSV"
	case resp.refused():
		c.Result, c.Detail = Failed, "unclear: the server refused with "+resp.why()+", not inappropriate_fallback"
	default:
		c.Result, c.Detail = No, "the server accepted "+VersionName(resp.hello.selectedVersion)+" despite TLS_FALLBACK_SCSV"
	}
	return c
}

// heartbleed offers the heartbeat extension. Only if the server echoes it
// does it send, before the handshake ends, a heartbeat request that claims
// 16 KiB of payload and carries none: a patched server drops it (RFC 6520,
// 4), a vulnerable one answers with 16 KiB of its memory, which is
// discarded unread.
func (s *scanner) heartbleed(ctx context.Context) Check {
	c := Check{ID: "heartbleed", Title: "Vulnerable to Heartbleed (CVE-2014-0160)"}
	v, ids := s.bestLegacy(nil)
	if v == 0 {
		c.Result, c.OK, c.Detail = NotApplic, true, "no protocol below TLS 1.3 (no affected implementation speaks only TLS 1.3)"
		return c
	}
	if v == VersionSSL3 {
		c.Result, c.Detail = NotChecked, "SSL 3.0 has no extensions"
		return c
	}
	h := s.hello(v, ids)
	h.heartbeat = true
	resp, err := s.p.exchange(ctx, h.marshal(), msgServerHelloDone, true)
	if err != nil {
		c.Result, c.Detail = statusOf(err)
		return c
	}
	if resp.conn != nil {
		defer resp.conn.Close()
	}
	if resp.refused() {
		c.Result, c.Detail = Failed, "the server refused a hello offering heartbeat: "+resp.why()
		return c
	}
	if _, ok := resp.hello.ext(extHeartbeat); !ok {
		c.Result, c.OK, c.Detail = No, true, "heartbeat extension not supported"
		return c
	}
	rec := []byte{recordHeartbeat, byte(v >> 8), byte(v), 0, 3, 1, 0x40, 0x00}
	if _, err := resp.conn.Write(rec); err != nil {
		c.Result, c.OK, c.Detail = No, true, "heartbeat supported; the malformed request was refused"
		return c
	}
	resp.conn.SetReadDeadline(time.Now().Add(min(s.opts.Timeout, 3*time.Second)))
	for {
		typ, payload, err := readRecord(resp.conn)
		if err != nil {
			c.Result, c.OK, c.Detail = No, true, "heartbeat supported; the malformed request got no answer"
			return c
		}
		if typ == recordHeartbeat && len(payload) > 3 {
			c.Result, c.Detail = Yes, fmt.Sprintf("VULNERABLE: the server answered a 0-byte heartbeat with %d bytes of memory", len(payload))
			return c
		}
		if typ == recordAlert {
			c.Result, c.OK, c.Detail = No, true, "heartbeat supported; the malformed request was refused"
			return c
		}
	}
}
