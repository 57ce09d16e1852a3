// Package preset is the table of mail provider presets: what
// `provider = "NAME"` fills in for an upstream (host, port, TLS mode, OAuth2
// endpoints). It depends on nothing else of Outbox but the settings it
// fills, so the configuration, which the sendmail shim loads at every
// call, needs no SMTP client.
package preset

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/outbox-mta/outbox/upstream/settings"
)

// Preset is what a provider name fills in for an upstream: host, port and TLS
// mode. Anything the operator sets explicitly wins over the preset.
type Preset struct {
	Host string
	Port int
	TLS  settings.TLS // StartTLS or ImplicitTLS
	// Note is shown in the README and by `outbox check` when useful.
	Note string
	// OAuth names the provider's OAuth2 endpoints and scopes; nil when
	// Outbox knows none for it.
	OAuth *OAuthPreset
	// Regions lists the values region may take when Host holds
	// "{region}"; empty: any. DefaultRegion is used when none is set.
	Regions       []string
	DefaultRegion string
	// RegionHosts maps a region to a host when the names follow no
	// pattern (mailgun).
	RegionHosts map[string]string
	// SenderMustMatch: the provider refuses or rewrites an envelope
	// sender or From other than the account, so `outbox check` warns
	// unless envelope_from or from_header = "rewrite" is set.
	SenderMustMatch bool
	// OAuthOnly: the provider takes no password; auth defaults to
	// xoauth2.
	OAuthOnly bool
}

// sesSMTPRegions are the regions with an SES SMTP endpoint
// (https://docs.aws.amazon.com/general/latest/gr/ses.html, "SMTP
// endpoints"); SES's API exists in more regions than its SMTP interface.
var sesSMTPRegions = []string{
	"us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
	"eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-north-1",
	"ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
	"af-south-1", "me-south-1", "il-central-1", "us-gov-east-1", "us-gov-west-1",
}

// zohoRegions are the top-level domains of Zoho's data centres
// (https://www.zoho.com/mail/help/zoho-smtp.html).
var zohoRegions = []string{"com", "eu", "in", "com.au", "jp", "com.cn", "sa"}

// OAuthPreset is what a provider name fills in an oauth2 block.
type OAuthPreset struct {
	// TokenURL, AuthURL and DeviceURL may hold "{tenant}".
	TokenURL, AuthURL, DeviceURL string
	// Tenants gives the tenant per flow when the operator sets none;
	// a flow missing here needs tenant to be set.
	Tenants map[string]string
	// Scopes per flow; a flow missing here is not offered by the
	// provider for SMTP.
	Scopes map[string][]string
	// DeviceLogin says whether `outbox oauth login` may use the device
	// code flow: Google does not allow it for the mail scope.
	DeviceLogin bool
	// RefreshWithScope sends the scopes with each refresh request, which
	// RFC 6749 §6 allows and Microsoft's endpoint needs in practice.
	RefreshWithScope bool
}

// Microsoft identity platform v2.0 endpoints:
// https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
// https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code
// SMTP scopes and permissions:
// https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
var microsoftOAuth = OAuthPreset{
	TokenURL:  "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
	AuthURL:   "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
	DeviceURL: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode",
	Tenants:   map[string]string{"refresh_token": "organizations"},
	Scopes: map[string][]string{
		"client_credentials": {"https://outlook.office365.com/.default"},
		"refresh_token":      {"https://outlook.office.com/SMTP.Send", "offline_access"},
	},
	DeviceLogin:      true,
	RefreshWithScope: true,
}

// Google: https://developers.google.com/identity/protocols/oauth2/native-app
// (loopback redirect), https://developers.google.com/workspace/gmail/imap/xoauth2-protocol
// (scope), https://developers.google.com/identity/protocols/oauth2/service-account
// (domain-wide delegation). The device flow's list of allowed scopes
// (https://developers.google.com/identity/protocols/oauth2/limited-input-device#allowedscopes)
// does not include https://mail.google.com/.
var googleOAuth = OAuthPreset{
	TokenURL: "https://oauth2.googleapis.com/token",
	AuthURL:  "https://accounts.google.com/o/oauth2/v2/auth",
	Scopes: map[string][]string{
		"refresh_token":   {"https://mail.google.com/"},
		"service_account": {"https://mail.google.com/"},
	},
}

// presets is the provider table. Each row names the provider's own
// documentation for its submission endpoint. Host "{region}" is replaced by
// the upstream's region setting.
var presets = map[string]Preset{
	// https://support.google.com/a/answer/176600
	// Gmail rewrites From to the account unless it is a verified "Send
	// mail as" address: https://support.google.com/mail/answer/22370
	"gmail": {Host: "smtp.gmail.com", Port: 587, TLS: "starttls", Note: `use an app password or OAuth2; From is rewritten to the account unless it is a verified "Send mail as" address`, OAuth: &googleOAuth},
	// https://support.google.com/a/answer/2956491 (Workspace SMTP relay service)
	"google-relay": {Host: "smtp-relay.gmail.com", Port: 587, TLS: "starttls", Note: "Google Workspace SMTP relay: allow this machine's IP address or require SMTP AUTH in the Admin console"},
	// https://support.microsoft.com/office/pop-imap-and-smtp-settings-8361e398-8af4-4e97-b147-6c6c4ac95353
	// Outlook.com turned Basic authentication off for SMTP in 2024:
	// https://support.microsoft.com/office/modern-authentication-methods-now-needed-to-continue-syncing-outlook-email-in-non-microsoft-email-apps-c5d65390-9676-4763-b41f-d7986499a90d
	"outlook": {Host: "smtp-mail.outlook.com", Port: 587, TLS: "starttls", Note: "personal Outlook.com accounts; OAuth2 only", OAuth: &outlookOAuth, OAuthOnly: true},
	// https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365
	"office365": {Host: "smtp.office365.com", Port: 587, TLS: "starttls", Note: "SMTP AUTH must be enabled for the mailbox; use OAuth2 (Basic authentication is being turned off)", OAuth: &microsoftOAuth, SenderMustMatch: true},
	// https://learn.microsoft.com/exchange/mail-flow-best-practices/high-volume-mails-m365
	"microsoft-hve": {Host: "smtp.hve.mx.microsoft", Port: 587, TLS: "starttls", Note: "Microsoft 365 High Volume Email: internal recipients only; an HVE account"},
	// https://help.yahoo.com/kb/SLN4724.html
	"yahoo": {Host: "smtp.mail.yahoo.com", Port: 465, TLS: "tls", Note: "needs an app password"},
	// https://support.apple.com/HT202304
	"icloud": {Host: "smtp.mail.me.com", Port: 587, TLS: "starttls", Note: "needs an app-specific password"},
	// https://www.fastmail.help/hc/en-us/articles/1500000278342
	"fastmail": {Host: "smtp.fastmail.com", Port: 465, TLS: "tls", Note: "needs an app password"},
	// https://www.zoho.com/mail/help/zoho-smtp.html
	"zoho": {Host: "smtp.zoho.{region}", Port: 465, TLS: "tls", Regions: zohoRegions, DefaultRegion: "com", SenderMustMatch: true,
		Note: "personal and free accounts; region = your data centre's domain (com, eu, in, com.au, jp, com.cn, sa)"},
	"zoho-pro": {Host: "smtppro.zoho.{region}", Port: 465, TLS: "tls", Regions: zohoRegions, DefaultRegion: "com", SenderMustMatch: true,
		Note: "paid organisation accounts (smtppro); region as for zoho"},
	// https://service.mail.qq.com/detail/0/428
	"qq": {Host: "smtp.qq.com", Port: 465, TLS: "tls", Note: "the password is the authorisation code; the envelope sender must be the account", SenderMustMatch: true},
	// https://help.mail.163.com/faqDetail.do?code=d7a5dc8471cd0c0e8b4b8f4f8e49998b374173cfe9171305fa1ce630d7f67ac2
	"163": {Host: "smtp.163.com", Port: 465, TLS: "tls", Note: "the password is the client authorisation code", SenderMustMatch: true},
	// https://help.mail.163.com (126.com shares 163's service)
	"126": {Host: "smtp.126.com", Port: 465, TLS: "tls", Note: "the password is the client authorisation code", SenderMustMatch: true},
	// https://open.work.weixin.qq.com/help2/pc/19886 (Tencent Exmail)
	"exmail": {Host: "smtp.exmail.qq.com", Port: 465, TLS: "tls", SenderMustMatch: true},
	// https://help.aliyun.com/document_detail/36576.html (Alibaba Mail enterprise)
	"aliyun": {Host: "smtp.qiye.aliyun.com", Port: 465, TLS: "tls"},
	// https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html
	"ses": {Host: "email-smtp.{region}.amazonaws.com", Port: 587, TLS: "starttls", Note: "needs region; username and password are SES SMTP credentials", Regions: sesSMTPRegions},
	// https://www.twilio.com/docs/sendgrid/for-developers/sending-email/integrating-with-the-smtp-api
	"sendgrid": {Host: "smtp.sendgrid.net", Port: 587, TLS: "starttls", Note: `username is "apikey", the password is the API key`},
	// https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/send-smtp
	"mailgun": {Host: "smtp.mailgun.org", Port: 587, TLS: "starttls", DefaultRegion: "us",
		RegionHosts: map[string]string{"us": "smtp.mailgun.org", "eu": "smtp.eu.mailgun.org"}, Note: `region = "eu" for an EU domain`},
	// https://postmarkapp.com/developer/user-guide/send-email-with-smtp
	"postmark": {Host: "smtp.postmarkapp.com", Port: 587, TLS: "starttls", Note: "username and password are the server API token"},
	// https://help.brevo.com/hc/en-us/articles/7924908994450
	"brevo": {Host: "smtp-relay.brevo.com", Port: 587, TLS: "starttls"},
}

// outlookOAuth is Microsoft's for personal accounts: only delegated
// access, through the "consumers" tenant.
var outlookOAuth = OAuthPreset{
	TokenURL: microsoftOAuth.TokenURL, AuthURL: microsoftOAuth.AuthURL, DeviceURL: microsoftOAuth.DeviceURL,
	Tenants:          map[string]string{"refresh_token": "consumers"},
	Scopes:           map[string][]string{"refresh_token": microsoftOAuth.Scopes["refresh_token"]},
	DeviceLogin:      true,
	RefreshWithScope: true,
}

// aliases of provider names.
var presetAliases = map[string]string{
	"microsoft365": "office365",
	"m365":         "office365",
	"hotmail":      "outlook",
	"tencent":      "exmail",
	"sendinblue":   "brevo",
	"zohopro":      "zoho-pro",
	"hve":          "microsoft-hve",
}

// Lookup returns the preset for a provider name. Region is needed by
// providers whose host depends on it (ses).
func Lookup(name, region string) (Preset, error) {
	key := strings.ToLower(name)
	if a, ok := presetAliases[key]; ok {
		key = a
	}
	p, ok := presets[key]
	if !ok {
		return Preset{}, fmt.Errorf("unknown provider %q; known providers: %s", name, strings.Join(Names(), ", "))
	}
	if region == "" {
		region = p.DefaultRegion
	}
	if p.RegionHosts != nil {
		h, ok := p.RegionHosts[strings.ToLower(region)]
		if !ok {
			return Preset{}, fmt.Errorf("provider %q has no region %q; use one of: %s", name, region, strings.Join(sortedKeys(p.RegionHosts), ", "))
		}
		p.Host = h
	}
	if strings.Contains(p.Host, "{region}") {
		if region == "" {
			return Preset{}, fmt.Errorf("provider %q needs region (for example region = \"us-east-1\")", name)
		}
		if len(p.Regions) > 0 && !slices.Contains(p.Regions, strings.ToLower(region)) {
			return Preset{}, fmt.Errorf("provider %q has no SMTP endpoint in region %q; regions with one: %s", name, region, strings.Join(p.Regions, ", "))
		}
		p.Host = strings.ReplaceAll(p.Host, "{region}", strings.ToLower(region))
	}
	return p, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Names lists the known provider names, sorted.
func Names() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
