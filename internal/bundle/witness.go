package bundle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/trailaudit/trail/internal/witness/cosig"
)

// Witnesses is a policy on a checkpoint's cosignatures (C2SP
// tlog-cosignature): the witnesses' verifier keys, and how many of them
// must have cosigned.
type Witnesses struct {
	Keys []string
	// Quorum is how many of Keys must have cosigned. Default all of them.
	Quorum int
}

// Cosigned is a witness cosignature that verified.
type Cosigned = cosig.Cosignature

// check verifies signed's cosignatures against the policy. It returns
// those that verified, and the names in unverified that remain unchecked.
func (w Witnesses) check(signed []byte, unverified []string) ([]Cosigned, []string, error) {
	if len(w.Keys) == 0 {
		return nil, unverified, nil
	}
	var vs []*cosig.Verifier
	for _, k := range w.Keys {
		v, err := cosig.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, nil, fmt.Errorf("bad witness key: %w", err)
		}
		vs = append(vs, v)
	}
	quorum := w.Quorum
	if quorum <= 0 {
		quorum = len(vs)
	}
	sigs, err := cosig.Verify(signed, vs)
	if err != nil {
		return nil, nil, fmt.Errorf("a witness cosignature does not verify: %v", err)
	}
	if len(sigs) < quorum {
		var names []string
		for _, v := range vs {
			names = append(names, v.Name())
		}
		return sigs, nil, fmt.Errorf("%d valid cosignature(s) of the %d required from witnesses %s", len(sigs), quorum, strings.Join(names, ", "))
	}
	var rest []string
	for _, u := range unverified {
		if !slices.ContainsFunc(vs, func(v *cosig.Verifier) bool { return u == fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()) }) {
			rest = append(rest, u)
		}
	}
	return sigs, rest, nil
}
