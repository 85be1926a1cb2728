package tasks

import "github.com/widgetq/widgetq/internal/payloadjson"

// decodeInstallFast decodes the payloads widgetq's producers write
// (payloadjson's compact form) without encoding/json's reflection and
// Decoder, two thirds of a payload's decode. It reports false for anything
// else, and the caller decodes it with decodeStrict, which is the
// authority: whatever this accepts, decodeStrict decodes to the same
// payload (FuzzDecodeInstallFast holds it to that). payload is valid
// UTF-8 already.
func decodeInstallFast(payload []byte, p *InstallWidgetPayload) bool {
	var c payloadjson.Install
	if _, ok := payloadjson.Decode(payload, &c); !ok {
		return false
	}
	*p = InstallWidgetPayload{AccountID: c.AccountID, WidgetCode: c.WidgetCode, Settings: c.Settings, SealedSettings: c.SealedSettings,
		EnqueueID: c.EnqueueID, Integration: c.Integration, BatchID: c.BatchID}
	return true
}
