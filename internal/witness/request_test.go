package witness

import (
	"bytes"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func FuzzParseRequest(f *testing.F) {
	cp := "example.com/log\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/log Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
	f.Add([]byte("old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\n" + cp))
	f.Add([]byte("old 0\n\n" + cp))
	f.Add([]byte("old 00\n\n" + cp))
	f.Add([]byte("old -1\n\n" + cp))
	f.Add([]byte("old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw\n\n" + cp))
	f.Add([]byte("old 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if len(r.Proof) > MaxProofLines || r.OldSize < 0 || len(r.Checkpoint) == 0 {
			t.Fatalf("ParseRequest(%q) = %+v, outside the limits", b, r)
		}
		if got := r.Format(); !bytes.Equal(got, b) {
			t.Fatalf("ParseRequest(%q).Format() = %q, want the input back", b, got)
		}
	})
}

func TestParseRequestLimits(t *testing.T) {
	var proof tlog.TreeProof
	for range MaxProofLines {
		proof = append(proof, tlog.Hash{1})
	}
	ok := Request{OldSize: 5, Proof: proof, Checkpoint: []byte("x\n")}
	if _, err := ParseRequest(ok.Format()); err != nil {
		t.Errorf("ParseRequest with %d proof lines: %v", MaxProofLines, err)
	}
	tooMany := Request{OldSize: 5, Proof: append(proof, tlog.Hash{2}), Checkpoint: []byte("x\n")}
	if _, err := ParseRequest(tooMany.Format()); err == nil {
		t.Errorf("ParseRequest with %d proof lines: no error", MaxProofLines+1)
	}
}
