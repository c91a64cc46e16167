// Package seal is govtrust's electronic seal service (电子印章): seal
// applications under dual control, seal making with the platform's
// seal-maker key (GB/T 38540-2020 SESeal, package ses), the registry of
// seals with their status and usage log, sealing of OFD, PDF and any file
// (detached .ses) with the official's own key through the local signing
// agent, time-stamps from the platform TSA, and verification with a
// report of every check and its reason.
package seal
