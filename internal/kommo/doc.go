// Package kommo is a client for the Kommo (formerly amoCRM) API v4, limited to
// what widgetq needs: widgets, the account, and OAuth 2.0 tokens.
//
// One Client talks to one account, whose API base is a full URL
// (https://{subdomain}.kommo.com, https://{subdomain}.amocrm.ru, or a sandbox
// on 127.0.0.1). Every non-2xx answer, and every transport failure, comes back
// as a *Error that carries Kommo's problem+json fields, the x-request-id, a
// Retry-After, a short secret-free snippet of the body, and a Class that says
// whether trying again can help. Callers match it with errors.As.
//
// The client retries nothing on its own except a single token refresh after
// a 401: retries over seconds and minutes belong to the job queue. Refresh
// tokens are single use, so a refresh hands the new pair to a TokenStore and
// only then uses it.
package kommo
