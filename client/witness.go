package client

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trailaudit/trail/internal/witness/cosig"
)

// ErrWitnessQuorum is wrapped by the error of Checkpoint and UpdateTrusted
// when the server's checkpoint carries fewer valid cosignatures of
// Config.Witnesses than Config.WitnessQuorum. The log may be showing this
// client a view no witness has seen (a split view), or its witnesses may be
// down or slow: do not trust the checkpoint; try again later and ask the
// log's operator if it persists.
var ErrWitnessQuorum = errors.New("not enough witness cosignatures")

// Cosignature is a witness's verified cosignature of a checkpoint (C2SP
// tlog-cosignature/v1): the witness states that, at Time, this was the
// largest tree of the log it had seen and that it extends every checkpoint
// of the log it cosigned before.
type Cosignature struct {
	// Witness is the witness's name, as in its key.
	Witness string `json:"witness"`
	// Time is when it cosigned.
	Time time.Time `json:"time"`
}

// witnessPolicy is which witnesses a client trusts and how many must
// cosign.
type witnessPolicy struct {
	verifiers []*cosig.Verifier
	quorum    int
}

func newWitnessPolicy(keys []string, quorum int) (witnessPolicy, error) {
	var p witnessPolicy
	seen := map[string]bool{}
	for _, k := range keys {
		v, err := cosig.NewVerifier(k)
		if err != nil {
			return p, fmt.Errorf("bad witness key: %w", err)
		}
		if seen[v.Name()] {
			return p, fmt.Errorf("witness %s given twice", v.Name())
		}
		seen[v.Name()] = true
		p.verifiers = append(p.verifiers, v)
	}
	p.quorum = quorum
	if quorum == 0 {
		p.quorum = len(keys)
	}
	if quorum < 0 || p.quorum > len(keys) {
		return p, fmt.Errorf("witness quorum %d: must be 1 to the number of witness keys, %d", quorum, len(keys))
	}
	return p, nil
}

// check verifies cp's cosignatures, records them, and applies the quorum.
func (p witnessPolicy) check(cp *Checkpoint) error {
	if len(p.verifiers) == 0 {
		return nil
	}
	sigs, err := cosig.Verify(cp.Note, p.verifiers)
	if err != nil {
		return fmt.Errorf("%w: a witness cosignature on the checkpoint of size %d does not verify: %v", ErrVerification, cp.Size, err)
	}
	cp.Cosignatures = nil
	for _, s := range sigs {
		cp.Cosignatures = append(cp.Cosignatures, Cosignature{Witness: s.Name, Time: s.Time})
	}
	if len(sigs) < p.quorum {
		var names []string
		for _, v := range p.verifiers {
			names = append(names, v.Name())
		}
		return fmt.Errorf("%w: the checkpoint of size %d carries %d valid cosignature(s) of the %d required from witnesses %s",
			ErrWitnessQuorum, cp.Size, len(sigs), p.quorum, strings.Join(names, ", "))
	}
	return nil
}
