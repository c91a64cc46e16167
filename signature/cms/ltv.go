package cms

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// ArchiveImprint returns the hash with h that an archive time-stamp of
// signer i covers (archive-time-stamp v2, ETSI TS 101 733 v1.7.4 §6.4.1):
// the encapContentInfo (with the external content in place of an absent
// eContent), the certificates and crls fields as they are now, and every
// field of the SignerInfo, its unsigned attributes without archive
// time-stamps. A token over it, added with AddArchiveTimeStamp, makes the
// validation data (chain, OCSP, CRLs) evidence that existed at its time.
func (sd *SignedData) ArchiveImprint(i int, h *Hash, content []byte) ([]byte, error) {
	if i < 0 || i >= len(sd.Signers) {
		return nil, errors.New("cms: no such signer")
	}
	if sd.Detached && content == nil {
		return nil, errors.New("cms: the detached content is needed for an archive time-stamp")
	}
	d := h.New()
	if sd.Detached {
		d.Write(encodeEncap(sd.ContentType, content, false))
	} else {
		d.Write(sd.rawEncap)
	}
	d.Write(sd.encodeCerts())
	d.Write(sd.encodeCRLs())
	s := sd.Signers[i]
	var b cryptobyte.Builder
	b.AddASN1Int64(s.Version)
	d.Write(b.BytesOrPanic())
	d.Write(s.rawSID)
	d.Write(s.rawDigestAlg)
	d.Write(s.RawSignedAttrs)
	d.Write(s.rawSigAlg)
	var sig cryptobyte.Builder
	sig.AddASN1OctetString(s.Signature)
	d.Write(sig.BytesOrPanic())
	var keep []Attribute
	for _, a := range s.UnsignedAttrs {
		if !a.Type.Equal(OIDAttrArchiveTimeStampV2) {
			keep = append(keep, a)
		}
	}
	if len(keep) > 0 {
		d.Write(encodeAttributes(tagC1, keep))
	}
	return d.Sum(nil), nil
}

// AddArchiveTimeStamp adds an archive time-stamp token to signer i.
func (sd *SignedData) AddArchiveTimeStamp(i int, token []byte) error {
	if i < 0 || i >= len(sd.Signers) {
		return errors.New("cms: no such signer")
	}
	sd.Signers[i].AddUnsigned(Attribute{Type: OIDAttrArchiveTimeStampV2, Values: [][]byte{token}})
	return nil
}
