package scan

import (
	"fmt"
	"math"
	"slices"
)

// Grade is the rating of an endpoint, after the Qualys SSL Labs SSL Server
// Rating Guide; docs/scan.md gives every rule.
type Grade struct {
	// Letter is A+, A, A-, B, C, D, E or F; or M (certificate name
	// mismatch) or T (certificate not trusted), for which IgnoringTrust
	// gives the grade the configuration would otherwise get.
	Letter        string `json:"letter"`
	IgnoringTrust string `json:"ignoring_trust,omitempty"`
	// Score is 0.3·Protocol + 0.3·KeyExchange + 0.4·Cipher, each 0-100;
	// zero if any of them is zero.
	Score       int `json:"score"`
	Protocol    int `json:"protocol_score"`
	KeyExchange int `json:"key_exchange_score"`
	Cipher      int `json:"cipher_score"`
	// Caps are the rules that lowered the grade, each with its reason.
	Caps []Cap `json:"caps,omitempty"`
	// Warnings keep an A from becoming A+.
	Warnings []string `json:"warnings,omitempty"`
}

// Cap is a rule that limits the grade to Max.
type Cap struct {
	Max    string `json:"max"`
	Reason string `json:"reason"`
}

var letters = []string{"A+", "A", "A-", "B", "C", "D", "E", "F"}

func rank(l string) int { return slices.Index(letters, l) }

// MeetsGrade reports whether letter is at least min (M and T meet
// nothing).
func MeetsGrade(letter, min string) bool {
	r := rank(letter)
	return r >= 0 && r <= rank(min)
}

// ValidGrade reports whether s is one of A+ .. F.
func ValidGrade(s string) bool { return rank(s) >= 0 }

var protocolScores = map[uint16]int{
	VersionSSL2: 0, VersionSSL3: 80, VersionTLS10: 90, VersionTLS11: 95, VersionTLS12: 100, VersionTLS13: 100,
}

// keyScore rates a key exchange strength in RSA-equivalent bits.
func keyScore(bits int) int {
	switch {
	case bits < 512:
		return 20
	case bits < 1024:
		return 40
	case bits < 2048:
		return 80
	case bits < 4096:
		return 90
	}
	return 100
}

func cipherScore(bits int) int {
	switch {
	case bits == 0:
		return 0
	case bits < 128:
		return 20
	case bits < 256:
		return 80
	}
	return 100
}

func scoreLetter(score int) string {
	switch {
	case score >= 80:
		return "A"
	case score >= 65:
		return "B"
	case score >= 50:
		return "C"
	case score >= 35:
		return "D"
	case score >= 20:
		return "E"
	}
	return "F"
}

// hstsMinAge is the max-age A+ needs: 180 days.
const hstsMinAge = 180 * 24 * 3600

// grade rates a report.
func grade(r *Report, t Target) Grade {
	var g Grade
	capAt := func(max, format string, args ...any) {
		g.Caps = append(g.Caps, Cap{Max: max, Reason: fmt.Sprintf(format, args...)})
	}
	warn := func(format string, args ...any) { g.Warnings = append(g.Warnings, fmt.Sprintf(format, args...)) }

	// Protocols.
	var versions []uint16
	var all []Suite
	suiteIn := map[uint16][]uint16{} // suite ID → versions accepting it
	for _, p := range r.Protocols {
		if p.Supported != Yes {
			if p.Supported == Timeout || p.Supported == Failed {
				warn("%s not checked: %s", p.Name, p.Detail)
			}
			continue
		}
		versions = append(versions, p.Version)
		for _, s := range p.Suites {
			if len(suiteIn[s.ID]) == 0 {
				all = append(all, s)
			}
			suiteIn[s.ID] = append(suiteIn[s.ID], p.Version)
		}
		if p.Incomplete != "" {
			warn("%s suite list may be incomplete: %s", p.Name, p.Incomplete)
		}
	}
	if len(versions) == 0 {
		return Grade{Letter: "F", Caps: []Cap{{Max: "F", Reason: "no SSL or TLS version is accepted"}}}
	}
	best, worst := 0, 100
	for _, v := range versions {
		best, worst = max(best, protocolScores[v]), min(worst, protocolScores[v])
	}
	g.Protocol = (best + worst) / 2
	has := func(v uint16) bool { return slices.Contains(versions, v) }

	// Key exchange: the weakest of the certificate key, the DH prime and
	// the accepted groups.
	weakest := math.MaxInt
	var weakestWhat string
	consider := func(bits int, what string) {
		if bits > 0 && bits < weakest {
			weakest, weakestWhat = bits, what
		}
	}
	var leaf *CertInfo
	if r.Certificate != nil && len(r.Certificate.Chain) > 0 {
		leaf = &r.Certificate.Chain[0]
		consider(leaf.strength, fmt.Sprintf("the certificate's %d-bit %s key", leaf.KeyBits, leaf.KeyType))
	}
	consider(r.DHBits, fmt.Sprintf("%d-bit DH parameters", r.DHBits))
	for _, gs := range r.Groups {
		if gs.TLS12 == Yes || gs.TLS13 == Yes {
			consider(LookupGroup(gs.ID).Strength, "group "+gs.Name)
		}
	}
	g.KeyExchange = 100
	if weakest != math.MaxInt {
		g.KeyExchange = keyScore(weakest)
	}
	var anon, export, null, rc4, weak64, nonFS, nonAEAD []string
	anyFS, anyAEAD := false, false
	for _, s := range all {
		switch {
		case s.Auth == "anon":
			anon = append(anon, s.Name)
		case s.Export:
			export = append(export, s.Name)
		}
		if s.Cipher == "NULL" {
			null = append(null, s.Name)
		}
		if s.Cipher == "RC4" {
			rc4 = append(rc4, s.Name)
		}
		if s.Weak64() && slices.ContainsFunc(suiteIn[s.ID], func(v uint16) bool { return v >= VersionTLS11 }) {
			weak64 = append(weak64, s.Name)
		}
		if s.FS && s.Auth != "anon" {
			anyFS = true
		} else if !s.FS {
			nonFS = append(nonFS, s.Name)
		}
		if s.AEAD {
			anyAEAD = true
		} else {
			nonAEAD = append(nonAEAD, s.Name)
		}
	}
	if len(anon) > 0 {
		g.KeyExchange = 0
	} else if len(export) > 0 {
		g.KeyExchange = min(g.KeyExchange, 40)
	}

	// Ciphers: the strongest and the weakest.
	strong, weak := 0, math.MaxInt
	for _, s := range all {
		strong, weak = max(strong, s.Bits), min(weak, s.Bits)
	}
	if len(all) == 0 {
		strong, weak = 0, 0
	}
	g.Cipher = (cipherScore(strong) + cipherScore(weak)) / 2

	if g.Protocol == 0 || g.KeyExchange == 0 || g.Cipher == 0 {
		g.Score = 0
	} else {
		g.Score = int(math.Round(0.3*float64(g.Protocol) + 0.3*float64(g.KeyExchange) + 0.4*float64(g.Cipher)))
	}

	// Caps to F.
	if has(VersionSSL2) {
		capAt("F", "SSLv2 is accepted (DROWN)")
	}
	if len(export) > 0 {
		capAt("F", "export suites are accepted: %s", export[0])
	}
	if len(null) > 0 {
		capAt("F", "suites without encryption are accepted: %s", null[0])
	}
	if len(anon) > 0 {
		capAt("F", "anonymous suites are accepted (no authentication): %s", anon[0])
	}
	if r.DHBits > 0 && r.DHBits < 1024 {
		capAt("F", "DH parameters of %d bits (Logjam)", r.DHBits)
	}
	if leaf != nil && leaf.strength > 0 && leaf.strength < 1024 {
		capAt("F", "the certificate key is %d-bit %s", leaf.KeyBits, leaf.KeyType)
	}
	for _, c := range r.Checks {
		if c.ID == "heartbleed" && c.Result == Yes {
			capAt("F", "vulnerable to Heartbleed")
		}
	}
	if c := r.Certificate; c != nil && c.md5 {
		capAt("F", "%s", c.WeakSignature)
	}

	// Caps to C.
	if has(VersionSSL3) {
		capAt("C", "SSLv3 is accepted (POODLE)")
	}
	if len(rc4) > 0 {
		capAt("C", "RC4 is accepted: %s", rc4[0])
	}
	if len(weak64) > 0 {
		capAt("C", "a 64-bit block cipher is accepted in TLS 1.1 or later (Sweet32): %s", weak64[0])
	}
	if !has(VersionTLS12) && !has(VersionTLS13) {
		capAt("C", "neither TLS 1.2 nor TLS 1.3 is accepted")
	}
	for _, c := range r.Checks {
		if c.ID == "compression" && c.Result == Yes {
			capAt("C", "TLS compression is enabled (CRIME)")
		}
	}

	// Caps to B.
	if has(VersionTLS10) || has(VersionTLS11) {
		capAt("B", "TLS 1.0 or TLS 1.1 is accepted")
	}
	if !anyFS {
		capAt("B", "no forward-secret suite is accepted")
	}
	if !anyAEAD {
		capAt("B", "no AEAD suite is accepted")
	}
	if r.DHBits > 0 && r.DHBits < 2048 {
		capAt("B", "DH parameters of %d bits (under 2048)", r.DHBits)
	}
	if weakest < 2048 && weakest >= 1024 {
		capAt("B", "key exchange strength under 2048 bits: %s", weakestWhat)
	}
	if c := r.Certificate; c != nil && c.ChainComplete == No {
		capAt("B", "incomplete certificate chain: %s", c.ChainNote)
	}
	for _, c := range r.Checks {
		if c.ID == "secure_renegotiation" && c.Result == No {
			capAt("B", "secure renegotiation is not supported")
		}
	}

	// A-: a good configuration that still accepts suites without forward
	// secrecy.
	if anyFS && len(nonFS) > 0 {
		capAt("A-", "suites without forward secrecy are accepted: %s", nonFS[0])
	}

	// Warnings, which keep an A from becoming A+.
	if !has(VersionTLS13) {
		warn("TLS 1.3 is not supported")
	}
	if len(nonAEAD) > 0 && anyAEAD {
		warn("suites without AEAD (CBC) are accepted: %s", nonAEAD[0])
	}
	for _, c := range r.Checks {
		switch {
		case c.Result == NotApplic:
		case c.Result == Timeout || c.Result == Failed || c.Result == NotChecked:
			warn("%s: not checked (%s)", c.Title, c.Detail)
		case !c.OK && c.ID == "fallback_scsv":
			warn("TLS_FALLBACK_SCSV is not honoured: %s", c.Detail)
		}
	}
	if c := r.Certificate; c != nil && !c.ChainInOrder {
		warn("the certificate chain is not in order")
	}
	switch h := r.HSTS; {
	case h.Checked == Yes && h.MaxAge < hstsMinAge:
		if h.MaxAge < 0 {
			warn("HSTS is missing: %s", h.Detail)
		} else {
			warn("HSTS max-age is %d s, under 180 days", h.MaxAge)
		}
	case h.Checked != Yes && t.HTTPS:
		warn("HSTS not checked: %s", h.Detail)
	}

	g.Letter = scoreLetter(g.Score)
	for _, c := range g.Caps {
		if rank(c.Max) > rank(g.Letter) {
			g.Letter = c.Max
		}
	}
	if g.Letter == "A" && len(g.Warnings) == 0 {
		g.Letter = "A+"
	}

	// Certificate problems override the letter.
	c := r.Certificate
	var trust string
	switch {
	case c == nil && len(anon) < len(all):
		trust = "T"
		why := "the certificate could not be read"
		if r.certErr != "" {
			why += " (no handshake: " + r.certErr + "; in TLS 1.3 the certificate is sent encrypted)"
		}
		g.Caps = append(g.Caps, Cap{Max: "T", Reason: why})
	case c == nil:
	default:
		// A weak signature is named on its own: crypto/x509's refusal
		// to verify it reads as an unknown authority.
		if c.WeakSignature != "" {
			trust = "T"
			g.Caps = append(g.Caps, Cap{Max: "T", Reason: c.WeakSignature})
		}
		if c.TrustError != "" || !c.Trusted {
			trust = "T"
			g.Caps = append(g.Caps, Cap{Max: "T", Reason: "the certificate is not trusted: " + c.TrustError})
		}
	}
	if c != nil && c.Expired {
		trust = "T"
		g.Caps = append(g.Caps, Cap{Max: "T", Reason: "the certificate has expired"})
	}
	if c != nil && c.NotYetValid {
		trust = "T"
		g.Caps = append(g.Caps, Cap{Max: "T", Reason: "the certificate is not yet valid"})
	}
	if c != nil && !c.HostnameOK {
		if trust == "" {
			trust = "M"
		}
		g.Caps = append(g.Caps, Cap{Max: "M", Reason: "the certificate does not match the name: " + c.HostnameError})
	}
	if trust != "" {
		g.IgnoringTrust, g.Letter = g.Letter, trust
	}
	return g
}

// Compliance lists how an endpoint deviates from a Mozilla Server Side TLS
// 6.0 profile.
type Compliance struct {
	Profile    string   `json:"profile"`
	Compliant  bool     `json:"compliant"`
	Deviations []string `json:"deviations"`
}

// Mozilla 6.0 (DESIGN.md, "TLS policy"): TLS 1.2 with ECDHE and AEAD only
// (intermediate), the three TLS 1.3 suites, four groups.
var (
	mozillaTLS12Suites = []uint16{0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8}
	mozillaTLS13Suites = []uint16{0x1301, 0x1302, 0x1303}
	mozillaGroups      = []uint16{0x11EC, 0x001D, 0x0017, 0x0018}
)

// mozillaHSTS is the profiles' HSTS max-age: two years.
const mozillaHSTS = 63072000

func mozilla(r *Report) []Compliance {
	return []Compliance{mozillaProfile(r, "intermediate"), mozillaProfile(r, "modern")}
}

func mozillaProfile(r *Report, profile string) Compliance {
	c := Compliance{Profile: profile, Deviations: []string{}}
	dev := func(format string, args ...any) { c.Deviations = append(c.Deviations, fmt.Sprintf(format, args...)) }
	allowed := []uint16{VersionTLS12, VersionTLS13}
	if profile == "modern" {
		allowed = []uint16{VersionTLS13}
	}
	tls13 := false
	for _, p := range r.Protocols {
		if p.Supported != Yes {
			continue
		}
		if p.Version == VersionTLS13 {
			tls13 = true
		}
		if !slices.Contains(allowed, p.Version) {
			dev("accepts %s", p.Name)
			continue
		}
		ok := mozillaTLS12Suites
		if p.Version == VersionTLS13 {
			ok = mozillaTLS13Suites
		}
		for _, s := range p.Suites {
			if !slices.Contains(ok, s.ID) {
				dev("accepts %s in %s", s.Name, p.Name)
			}
		}
	}
	if !tls13 {
		dev("does not accept TLS 1.3")
	}
	for _, g := range r.Groups {
		if (g.TLS12 == Yes || g.TLS13 == Yes) && !slices.Contains(mozillaGroups, g.ID) {
			dev("accepts group %s", g.Name)
		}
	}
	if r.DHBits > 0 && profile == "intermediate" {
		dev("uses DHE (%d-bit parameters); the profile has no DHE suites", r.DHBits)
	}
	if cert := r.Certificate; cert != nil && len(cert.Chain) > 0 {
		leaf := cert.Chain[0]
		okKey := leaf.KeyType == "ECDSA" && leaf.KeyBits == 256
		if profile == "intermediate" && leaf.KeyType == "RSA" && leaf.KeyBits >= 2048 {
			okKey = true
		}
		if !okKey {
			want := "ECDSA P-256"
			if profile == "intermediate" {
				want += " or RSA of 2048 bits or more"
			}
			dev("certificate key is %d-bit %s, not %s", leaf.KeyBits, leaf.KeyType, want)
		}
		if cert.LifetimeDays > 366 {
			dev("certificate lifetime is %d days, over 366", cert.LifetimeDays)
		}
	}
	if h := r.HSTS; h.Checked == Yes && h.MaxAge < mozillaHSTS {
		dev("HSTS max-age is %d, not at least 63072000 (two years)", max(h.MaxAge, 0))
	}
	c.Compliant = len(c.Deviations) == 0
	return c
}
