//! The HTML of `/my/`: server-rendered, no script (except the card page, which mounts
//! the provider's script to take the card), every value escaped
//! ([`crate::ops::report::esc`]), in the customer's language (nl/en).
//!
//! Amounts come in as cents (bills, payments, balance) or micros (rated usage, shown
//! rounded half-up to cents per line with [`micros_to_cents`], the invoice line's rounding;
//! the total is the exact sum rounded once, so lines may differ from it by a cent).
//! Volumes are shown in the customer's terms: call time as h:mm:ss, data in MB/GB
//! (decimal, 1 MB = 1 000 000 bytes, two decimals, truncated), messages as a count.

use crate::ops::report::esc;
use crate::rate::money::{format_cents, micros_to_cents};

/// The page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Nl,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    /// A text in this language.
    pub fn t(self, key: &'static str) -> &'static str {
        let (nl, en) = match key {
            "title" => ("Mijn account", "My account"),
            "signin_title" => ("Inloggen", "Sign in"),
            "signin_intro" => (
                "Vul het e-mailadres van uw account in. U krijgt een link waarmee u 15 minuten lang één keer kunt inloggen.",
                "Enter your account's email address. We send you a link that signs you in once, within 15 minutes.",
            ),
            "email" => ("E-mailadres", "Email address"),
            "send_link" => ("Stuur mij een inloglink", "Send me a sign-in link"),
            "sent_title" => ("Kijk in uw mailbox", "Check your mailbox"),
            "sent" => (
                "Als dit adres bij een account hoort, hebben we er een inloglink naartoe gestuurd. De link is 15 minuten geldig en werkt één keer.",
                "If this address belongs to an account, we have sent a sign-in link to it. The link works once, within 15 minutes.",
            ),
            "too_many" => (
                "Te veel aanvragen vanaf uw verbinding. Probeer het over een kwartier opnieuw.",
                "Too many requests from your connection. Please try again in 15 minutes.",
            ),
            "confirm_title" => ("Inloggen bevestigen", "Confirm sign-in"),
            "confirm" => (
                "Klik op de knop om in te loggen op uw account.",
                "Press the button to sign in to your account.",
            ),
            "continue" => ("Inloggen", "Sign in"),
            "invalid_link" => (
                "Deze link is verlopen of al gebruikt. Vraag een nieuwe aan.",
                "This link has expired or was used already. Please ask for a new one.",
            ),
            "new_link" => ("Nieuwe link aanvragen", "Ask for a new link"),
            "forbidden" => (
                "Dit formulier is verlopen. Laad de pagina opnieuw en probeer het nog eens.",
                "This form has expired. Reload the page and try again.",
            ),
            "not_found" => ("Niet gevonden.", "Not found."),
            "back" => ("Terug naar mijn account", "Back to my account"),
            "signout" => ("Uitloggen", "Sign out"),
            "account" => ("Klantnummer", "Account"),
            "balance" => ("Saldo", "Balance"),
            "balance_owed" => ("Nog te betalen", "To pay"),
            "balance_credit" => ("Tegoed", "Credit"),
            "balance_zero" => ("U hoeft niets te betalen.", "Nothing to pay."),
            "open_items" => ("Openstaand", "Open and overdue"),
            "nothing_open" => ("Er staat niets open.", "Nothing is open."),
            "usage" => ("Verbruik deze periode", "Usage this period"),
            "usage_note" => (
                "Tot nu toe, nog niet gefactureerd. Bedragen exclusief btw.",
                "So far, not billed yet. Amounts exclude VAT.",
            ),
            "no_usage" => ("Nog geen verbruik.", "No usage yet."),
            "allowances" => ("Bundels", "Allowances"),
            "included" => ("inbegrepen", "included"),
            "used" => ("verbruikt", "used"),
            "remaining" => ("over", "remaining"),
            "service" => ("Dienst", "Service"),
            "destination" => ("Bestemming", "Destination"),
            "band" => ("Tijdvak", "Band"),
            "count" => ("Aantal", "Count"),
            "volume" => ("Verbruik", "Volume"),
            "amount" => ("Bedrag", "Amount"),
            "total" => ("Totaal", "Total"),
            "invoices" => ("Facturen", "Invoices"),
            "no_invoices" => ("Nog geen facturen.", "No invoices yet."),
            "number" => ("Nummer", "Number"),
            "date" => ("Datum", "Date"),
            "due" => ("Vervaldatum", "Due"),
            "open" => ("Open", "Open"),
            "status" => ("Status", "Status"),
            "documents" => ("Documenten", "Documents"),
            "payments" => ("Betalingen", "Payments"),
            "no_payments" => ("Nog geen betalingen.", "No payments yet."),
            "for_invoice" => ("Factuur", "Invoice"),
            "on_account" => ("op uw account", "on your account"),
            "pay_now" => ("Nu betalen", "Pay now"),
            "save_card" => ("Mijn betaalkaart bewaren", "Save my card"),
            "card_note" => (
                "Bewaar uw kaart om facturen automatisch te laten betalen.",
                "Save your card to have invoices paid automatically.",
            ),
            "replace_card" => ("Andere betaalkaart bewaren", "Save another card"),
            "card_title" => ("Betaalkaart bewaren", "Save your card"),
            "card_intro" => (
                "Vul uw kaartgegevens in. Wij bewaren ze niet zelf: de betaaldienst bewaart de kaart en schrijft openstaande facturen op de vervaldatum automatisch af.",
                "Enter your card details. We do not keep them ourselves: the payment service keeps the card and charges open invoices automatically on their due date.",
            ),
            "card_save_button" => ("Kaart bewaren", "Save card"),
            "card_saved_title" => ("Betaalkaart bewaard", "Card saved"),
            "card_not_confirmed" => (
                "De kaart is (nog) niet bevestigd. Probeer het opnieuw.",
                "The card has not been confirmed (yet). Please try again.",
            ),
            "card_not_card_account" => (
                "Uw account betaalt niet per kaart. Neem contact met ons op om automatisch per kaart te betalen.",
                "Your account does not pay by card. Please contact us to pay automatically by card.",
            ),
            "psp_unavailable" => (
                "Online betalen is op dit moment niet mogelijk.",
                "Paying online is not available right now.",
            ),
            "voice" => ("Bellen", "Calls"),
            "sms" => ("Sms", "Text messages"),
            "data" => ("Internet", "Data"),
            "st_open" => ("open", "open"),
            "st_partially_paid" => ("deels betaald", "partly paid"),
            "st_paid" => ("betaald", "paid"),
            "st_overdue" => ("te laat", "overdue"),
            "st_credited" => ("gecrediteerd", "credited"),
            "k_payment" => ("betaling", "payment"),
            "k_refund" => ("terugbetaling", "refund"),
            "k_return" => ("gestorneerde incasso", "returned direct debit"),
            "session_ends" => ("U wordt automatisch uitgelogd om", "You are signed out automatically at"),
            _ => ("?", "?"),
        };
        match self {
            Lang::Nl => nl,
            Lang::En => en,
        }
    }

    /// `12,34` / `12.34` with the euro sign (or the currency code) and thousands grouped.
    pub fn money(self, currency: &str, cents: i64) -> String {
        let s = format_cents(cents);
        let (sign, digits) = match s.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", s.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, "00"));
        let (group, dec) = match self {
            Lang::Nl => ('.', ','),
            Lang::En => (',', '.'),
        };
        let mut grouped = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push(group);
            }
            grouped.push(c);
        }
        let sym = if currency == "EUR" { "€" } else { currency };
        match self {
            Lang::Nl => format!("{sym} {sign}{grouped}{dec}{frac}"),
            Lang::En => format!("{sign}{sym}{grouped}{dec}{frac}"),
        }
    }

    /// Micros rounded half-up to cents, as [`Lang::money`].
    pub fn micros(self, currency: &str, micros: i128) -> String {
        self.money(currency, micros_to_cents(micros))
    }

    /// `YYYY-MM-DD` as `31-12-2026` (nl) or `31 Dec 2026` (en).
    pub fn date(self, d: &str) -> String {
        match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => match self {
                Lang::Nl => d.format("%d-%m-%Y").to_string(),
                Lang::En => d.format("%-d %b %Y").to_string(),
            },
            Err(_) => d.to_owned(),
        }
    }

    /// A period `YYYY-MM` as `december 2026` / `December 2026`.
    pub fn period(self, p: &str) -> String {
        const NL: [&str; 12] = [
            "januari",
            "februari",
            "maart",
            "april",
            "mei",
            "juni",
            "juli",
            "augustus",
            "september",
            "oktober",
            "november",
            "december",
        ];
        const EN: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        match p.parse::<crate::billing::Period>() {
            Ok(pp) => {
                let m = (pp.month - 1) as usize;
                let name = if self == Lang::Nl { NL[m] } else { EN[m] };
                format!("{name} {}", pp.year)
            }
            Err(_) => p.to_owned(),
        }
    }

    /// A volume in the customer's terms: seconds as h:mm:ss, bytes as MB/GB, messages
    /// as a count.
    pub fn volume(self, unit: &str, v: u64) -> String {
        match unit {
            "seconds" => format!("{}:{:02}:{:02}", v / 3600, v / 60 % 60, v % 60),
            "bytes" => {
                let (div, name) = if v >= 1_000_000_000 {
                    (1_000_000_000u64, "GB")
                } else {
                    (1_000_000, "MB")
                };
                let hundredths = v as u128 * 100 / div as u128;
                let sep = if self == Lang::Nl { ',' } else { '.' };
                format!("{}{sep}{:02} {name}", hundredths / 100, hundredths % 100)
            }
            _ => {
                let word = match (self, v) {
                    (Lang::Nl, 1) => "bericht",
                    (Lang::Nl, _) => "berichten",
                    (Lang::En, 1) => "message",
                    (Lang::En, _) => "messages",
                };
                format!("{v} {word}")
            }
        }
    }
}

/// The stylesheet (inline: the Content-Security-Policy allows inline styles only).
const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;background:#f3f5f8;color:#1d2330;line-height:1.45}
header{background:#0b3d91;color:#fff}
header .in{max-width:980px;margin:0 auto;padding:14px 18px;display:flex;align-items:center;gap:14px;flex-wrap:wrap}
header .brand{font-weight:700;font-size:1.15rem;letter-spacing:.2px}
header .who{margin-left:auto;font-size:.92rem;opacity:.92}
header form{margin:0}
header button{background:transparent;border:1px solid rgba(255,255,255,.6);color:#fff;border-radius:6px;padding:6px 12px;font-size:.9rem;cursor:pointer}
main{max-width:980px;margin:0 auto;padding:18px}
h1{font-size:1.45rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:0 0 .7rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:16px;margin-bottom:16px}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(16,24,40,.12);padding:16px 18px;margin-bottom:16px;overflow-x:auto}
.grid .card{margin-bottom:0}
.big{font-size:2rem;font-weight:700;margin:.2rem 0}
.owed{color:#b42318}.credit{color:#067647}
.muted{color:#5b6475;font-size:.9rem}
table{width:100%;border-collapse:collapse;font-size:.95rem}
th,td{text-align:left;padding:8px 6px;border-bottom:1px solid #e6e9ef;vertical-align:middle}
th{font-weight:600;color:#5b6475;font-size:.82rem;text-transform:uppercase;letter-spacing:.3px}
td.n,th.n{text-align:right;white-space:nowrap}
tfoot td{font-weight:700;border-bottom:0}
.badge{display:inline-block;padding:2px 9px;border-radius:999px;font-size:.8rem;font-weight:600;background:#eef2f7;color:#344054}
.b-overdue{background:#fee4e2;color:#b42318}.b-paid{background:#dcfae6;color:#067647}.b-open,.b-partially_paid{background:#fef0c7;color:#93370d}
a{color:#0b57d0}
a.doc{display:inline-block;margin-right:8px;padding:3px 9px;border:1px solid #c9d3e3;border-radius:6px;text-decoration:none;font-size:.85rem}
button.primary,input[type=submit]{background:#0b57d0;color:#fff;border:0;border-radius:8px;padding:10px 16px;font-size:1rem;font-weight:600;cursor:pointer}
button.small{padding:6px 12px;font-size:.88rem}
input[type=email]{width:100%;padding:11px 12px;font-size:1rem;border:1px solid #c9d3e3;border-radius:8px;margin:.3rem 0 .9rem}
.narrow{max-width:460px;margin:30px auto}
.bar{height:8px;background:#e6e9ef;border-radius:4px;overflow:hidden;margin:6px 0 2px}
.bar span{display:block;height:100%;background:#0b57d0}
.allow{margin-bottom:12px}
@media (max-width:640px){
 main{padding:10px}
 .big{font-size:1.6rem}
 table.stack thead{display:none}
 table.stack tr{display:block;border-bottom:1px solid #e6e9ef;padding:6px 0}
 table.stack td{display:flex;justify-content:space-between;gap:10px;border:0;padding:3px 2px;text-align:right}
 table.stack td::before{content:attr(data-l);color:#5b6475;font-size:.82rem;text-align:left}
 table.stack tfoot td::before{content:""}
 header .who{margin-left:0;width:100%}
}
"#;

/// A whole page: the header (brand, who is signed in, sign-out form) and `body`.
pub fn layout(
    lang: Lang,
    brand: &str,
    title: &str,
    who: Option<(&str, &str)>,
    body: &str,
) -> String {
    let who_html = match who {
        Some((name, csrf)) => format!(
            r#"<span class="who">{name}</span><form method="post" action="/my/signout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">{out}</button></form>"#,
            name = esc(name),
            csrf = esc(csrf),
            out = lang.t("signout"),
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="{code}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{title} · {brand}</title><style>{STYLE}</style></head>
<body><header><div class="in"><span class="brand">{brand}</span>{who_html}</div></header>
<main>{body}</main></body></html>
"#,
        code = lang.code(),
        title = esc(title),
        brand = esc(brand),
    )
}

/// A small page with one message and an optional form.
pub fn message(lang: Lang, brand: &str, title: &str, text: &str, extra: &str) -> String {
    layout(
        lang,
        brand,
        title,
        None,
        &format!(
            r#"<div class="card narrow"><h1>{}</h1><p>{}</p>{extra}</div>"#,
            esc(title),
            esc(text)
        ),
    )
}

/// The sign-in form (asks for a link).
pub fn signin_form(lang: Lang, brand: &str, pre_csrf: &str) -> String {
    let body = format!(
        r#"<div class="card narrow"><h1>{title}</h1><p class="muted">{intro}</p>
<form method="post" action="/my/link"><input type="hidden" name="csrf" value="{csrf}">
<label for="email">{email}</label><input type="email" id="email" name="email" autocomplete="email" required>
<button class="primary" type="submit" id="send">{send}</button></form></div>"#,
        title = lang.t("signin_title"),
        intro = lang.t("signin_intro"),
        csrf = esc(pre_csrf),
        email = lang.t("email"),
        send = lang.t("send_link"),
    );
    layout(lang, brand, lang.t("signin_title"), None, &body)
}

/// The page behind a link: one button that consumes it (a mail scanner fetching the
/// link with GET uses nothing up).
pub fn confirm(lang: Lang, brand: &str, token: &str, pre_csrf: &str) -> String {
    let form = format!(
        r#"<form method="post" action="/my/signin"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="token" value="{}"><button class="primary" type="submit" id="continue">{}</button></form>"#,
        esc(pre_csrf),
        esc(token),
        lang.t("continue")
    );
    message(
        lang,
        brand,
        lang.t("confirm_title"),
        lang.t("confirm"),
        &form,
    )
}

/// One usage line as the page shows it.
pub struct UsageLine {
    pub service: String,
    pub destination: String,
    pub band: String,
    pub unit: String,
    pub count: u64,
    pub volume: u64,
    pub micros: i128,
}

/// One allowance (from the usage data's `allowances`, when plans have them).
pub struct Allowance {
    pub name: String,
    pub unit: String,
    pub included: u64,
    pub used: u64,
    pub remaining: u64,
}

/// One invoice row.
pub struct InvoiceRow {
    pub number: String,
    pub date: String,
    pub due: String,
    pub total: i64,
    pub open: i64,
    pub status: String,
    pub has_pdf: bool,
    pub has_ubl: bool,
}

/// One payment row.
pub struct PaymentRow {
    pub date: String,
    pub kind: &'static str,
    pub cents: i64,
    pub invoice: Option<String>,
}

/// Everything the account page shows.
pub struct AccountPage {
    pub lang: Lang,
    pub brand: String,
    pub account: String,
    pub name: String,
    pub csrf: String,
    pub currency: String,
    pub balance: i64,
    /// Periods with unbilled usage (or the current one), each with its lines.
    pub usage: Vec<(String, Vec<UsageLine>)>,
    pub allowances: Vec<Allowance>,
    pub invoices: Vec<InvoiceRow>,
    pub payments: Vec<PaymentRow>,
    /// Pay-now buttons (a payment provider is configured).
    pub psp: bool,
    /// The save-card section: a card account with a payment provider configured.
    pub card_setup: bool,
    /// The card saved for the account: its last four digits (when known) and the date.
    pub saved_card: Option<(Option<String>, String)>,
    /// `HH:MM` UTC of the session's end.
    pub session_end: String,
}

fn td(label: &str, class: &str, v: &str) -> String {
    format!(r#"<td data-l="{}"{}>{}</td>"#, esc(label), class, v)
}

fn status_badge(lang: Lang, status: &str) -> String {
    let key = match status {
        "open" => "st_open",
        "partially_paid" => "st_partially_paid",
        "paid" => "st_paid",
        "overdue" => "st_overdue",
        "credited" => "st_credited",
        _ => "",
    };
    let text = if key.is_empty() { status } else { lang.t(key) };
    format!(
        r#"<span class="badge b-{}">{}</span>"#,
        esc(status),
        esc(text)
    )
}

fn service_name(lang: Lang, s: &str) -> String {
    match s {
        "voice" => lang.t("voice").to_owned(),
        "sms" => lang.t("sms").to_owned(),
        "data" => lang.t("data").to_owned(),
        other => other.to_owned(),
    }
}

fn pay_form(lang: Lang, csrf: &str, number: &str) -> String {
    format!(
        r#"<form method="post" action="/my/bills/{n}/pay" style="margin:0"><input type="hidden" name="csrf" value="{c}"><button class="primary small" type="submit">{t}</button></form>"#,
        n = esc(number),
        c = esc(csrf),
        t = lang.t("pay_now"),
    )
}

/// The account page.
pub fn account(p: &AccountPage) -> String {
    let l = p.lang;
    let cur = p.currency.as_str();
    let mut b = String::new();
    b.push_str(&format!(
        r#"<h1>{} <span class="muted">· {} {}</span></h1>"#,
        esc(&p.name),
        l.t("account"),
        esc(&p.account)
    ));
    // Balance and open items.
    let (class, label) = match p.balance {
        x if x > 0 => ("owed", l.t("balance_owed")),
        x if x < 0 => ("credit", l.t("balance_credit")),
        _ => ("", l.t("balance")),
    };
    b.push_str(r#"<div class="grid"><div class="card" id="balance">"#);
    b.push_str(&format!(
        r#"<h2>{}</h2><div class="big {class}">{}</div><div class="muted">{}</div>"#,
        label,
        esc(&l.money(cur, p.balance.abs())),
        if p.balance == 0 {
            l.t("balance_zero")
        } else {
            ""
        }
    ));
    b.push_str("</div>");
    let open: Vec<&InvoiceRow> = p.invoices.iter().filter(|i| i.open > 0).collect();
    b.push_str(&format!(
        r#"<div class="card" id="open"><h2>{}</h2>"#,
        l.t("open_items")
    ));
    if open.is_empty() {
        b.push_str(&format!(r#"<p class="muted">{}</p>"#, l.t("nothing_open")));
    } else {
        b.push_str("<table><tbody>");
        for i in &open {
            b.push_str(&format!(
                r#"<tr><td>{}<br><span class="muted">{} {}</span></td><td class="n">{}<br>{}</td>{}</tr>"#,
                esc(&i.number),
                l.t("due"),
                esc(&l.date(&i.due)),
                esc(&l.money(cur, i.open)),
                status_badge(l, &i.status),
                if p.psp {
                    format!(r#"<td class="n">{}</td>"#, pay_form(l, &p.csrf, &i.number))
                } else {
                    String::new()
                }
            ));
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</div></div>");
    // Allowances (when the usage data has them).
    if !p.allowances.is_empty() {
        b.push_str(&format!(
            r#"<div class="card" id="allowances"><h2>{}</h2>"#,
            l.t("allowances")
        ));
        for a in &p.allowances {
            let pct = if a.included == 0 {
                0
            } else {
                (a.used.min(a.included) as u128 * 100 / a.included as u128) as u64
            };
            b.push_str(&format!(
                r#"<div class="allow"><strong>{}</strong> — {} {} <div class="bar"><span style="width:{pct}%"></span></div><span class="muted">{} {} · {} {}</span></div>"#,
                esc(&a.name),
                esc(&l.volume(&a.unit, a.remaining)),
                l.t("remaining"),
                esc(&l.volume(&a.unit, a.used)),
                l.t("used"),
                esc(&l.volume(&a.unit, a.included)),
                l.t("included"),
            ));
        }
        b.push_str("</div>");
    }
    // Usage of the open period(s).
    for (period, lines) in &p.usage {
        b.push_str(&format!(
            r#"<div class="card usage" id="usage-{}"><h2>{} — {}</h2><p class="muted">{}</p>"#,
            esc(period),
            l.t("usage"),
            esc(&l.period(period)),
            l.t("usage_note")
        ));
        if lines.is_empty() {
            b.push_str(&format!(r#"<p>{}</p></div>"#, l.t("no_usage")));
            continue;
        }
        b.push_str(&format!(
            r#"<table class="stack"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th class="n">{}</th><th class="n">{}</th><th class="n">{}</th></tr></thead><tbody>"#,
            l.t("service"),
            l.t("destination"),
            l.t("band"),
            l.t("count"),
            l.t("volume"),
            l.t("amount")
        ));
        let mut sum = 0i128;
        for u in lines {
            sum += u.micros;
            b.push_str("<tr>");
            b.push_str(&td(l.t("service"), "", &esc(&service_name(l, &u.service))));
            b.push_str(&td(l.t("destination"), "", &esc(&u.destination)));
            b.push_str(&td(l.t("band"), "", &esc(&u.band)));
            b.push_str(&td(l.t("count"), r#" class="n""#, &u.count.to_string()));
            b.push_str(&td(
                l.t("volume"),
                r#" class="n""#,
                &esc(&l.volume(&u.unit, u.volume)),
            ));
            b.push_str(&td(
                l.t("amount"),
                r#" class="n""#,
                &esc(&l.micros(cur, u.micros)),
            ));
            b.push_str("</tr>");
        }
        b.push_str(&format!(
            r#"</tbody><tfoot><tr><td colspan="5">{}</td><td class="n">{}</td></tr></tfoot></table></div>"#,
            l.t("total"),
            esc(&l.micros(cur, sum))
        ));
    }
    // Invoices.
    b.push_str(&format!(
        r#"<div class="card" id="invoices"><h2>{}</h2>"#,
        l.t("invoices")
    ));
    if p.invoices.is_empty() {
        b.push_str(&format!(r#"<p class="muted">{}</p>"#, l.t("no_invoices")));
    } else {
        b.push_str(&format!(
            r#"<table class="stack"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th class="n">{}</th><th class="n">{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
            l.t("number"),
            l.t("date"),
            l.t("due"),
            l.t("total"),
            l.t("open"),
            l.t("status"),
            l.t("documents")
        ));
        for i in &p.invoices {
            let mut docs = String::new();
            if i.has_pdf {
                docs.push_str(&format!(
                    r#"<a class="doc" href="/my/bills/{n}/pdf" download>PDF</a>"#,
                    n = esc(&i.number)
                ));
            }
            if i.has_ubl {
                docs.push_str(&format!(
                    r#"<a class="doc" href="/my/bills/{n}/ubl" download>UBL</a>"#,
                    n = esc(&i.number)
                ));
            }
            b.push_str("<tr>");
            b.push_str(&td(l.t("number"), "", &esc(&i.number)));
            b.push_str(&td(l.t("date"), "", &esc(&l.date(&i.date))));
            b.push_str(&td(l.t("due"), "", &esc(&l.date(&i.due))));
            b.push_str(&td(
                l.t("total"),
                r#" class="n""#,
                &esc(&l.money(cur, i.total)),
            ));
            b.push_str(&td(
                l.t("open"),
                r#" class="n""#,
                &esc(&l.money(cur, i.open)),
            ));
            b.push_str(&td(l.t("status"), "", &status_badge(l, &i.status)));
            b.push_str(&td(l.t("documents"), "", &format!("<span>{docs}</span>")));
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</div>");
    // Payments.
    b.push_str(&format!(
        r#"<div class="card" id="payments"><h2>{}</h2>"#,
        l.t("payments")
    ));
    if p.payments.is_empty() {
        b.push_str(&format!(r#"<p class="muted">{}</p>"#, l.t("no_payments")));
    } else {
        b.push_str(&format!(
            r#"<table class="stack"><thead><tr><th>{}</th><th></th><th>{}</th><th class="n">{}</th></tr></thead><tbody>"#,
            l.t("date"),
            l.t("for_invoice"),
            l.t("amount")
        ));
        for pm in &p.payments {
            b.push_str("<tr>");
            b.push_str(&td(l.t("date"), "", &esc(&l.date(&pm.date))));
            b.push_str(&td("", "", l.t(pm.kind)));
            b.push_str(&td(
                l.t("for_invoice"),
                "",
                &esc(pm.invoice.as_deref().unwrap_or(l.t("on_account"))),
            ));
            b.push_str(&td(
                l.t("amount"),
                r#" class="n""#,
                &esc(&l.money(cur, pm.cents)),
            ));
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</div>");
    if p.card_setup {
        let (note, button) = match &p.saved_card {
            Some((last4, date)) => (card_saved(l, last4.as_deref(), date), l.t("replace_card")),
            None => (l.t("card_note").to_owned(), l.t("save_card")),
        };
        b.push_str(&format!(
            r#"<div class="card" id="card"><h2>{}</h2><p class="muted" id="card-state">{}</p><form method="post" action="/my/card"><input type="hidden" name="csrf" value="{}"><button class="primary" type="submit" id="save-card">{}</button></form></div>"#,
            l.t("save_card"),
            esc(&note),
            esc(&p.csrf),
            button
        ));
    }
    b.push_str(&format!(
        r#"<p class="muted">{} {} UTC.</p>"#,
        l.t("session_ends"),
        esc(&p.session_end)
    ));
    layout(
        l,
        &p.brand,
        l.t("title"),
        Some((&format!("{} · {}", p.name, p.account), &p.csrf)),
        &b,
    )
}

/// "Card ending 4242, saved on 5 Dec 2026: due invoices are charged to it automatically."
pub fn card_saved(l: Lang, last4: Option<&str>, date: &str) -> String {
    let d = l.date(date);
    match (l, last4) {
        (Lang::Nl, Some(x)) => format!(
            "Betaalkaart eindigend op {x}, bewaard op {d}: openstaande facturen worden op de vervaldatum automatisch afgeschreven."
        ),
        (Lang::Nl, None) => format!(
            "Betaalkaart bewaard op {d}: openstaande facturen worden op de vervaldatum automatisch afgeschreven."
        ),
        (Lang::En, Some(x)) => format!(
            "Card ending {x}, saved on {d}: open invoices are charged to it automatically on their due date."
        ),
        (Lang::En, None) => format!(
            "Card saved on {d}: open invoices are charged to it automatically on their due date."
        ),
    }
}

/// What the card page hands to the provider's script.
pub struct CardPage<'a> {
    pub lang: Lang,
    pub brand: &'a str,
    /// `name · account` for the header, with the session's CSRF token (sign-out form).
    pub who: &'a str,
    pub csrf: &'a str,
    /// The SetupIntent's client secret (for the browser; not a server secret).
    pub client_secret: &'a str,
    pub publishable_key: &'a str,
    pub js_url: &'a str,
    /// The nonce of this response's Content-Security-Policy `script-src`.
    pub nonce: &'a str,
}

/// The card page: mounts the provider's card form (Stripe.js, `confirmCardSetup`) and,
/// once the card is confirmed, goes to `/my/card/done?setup_intent=<id>`, where the
/// server reads the SetupIntent back from the provider before it saves anything.
pub fn card_page(c: &CardPage) -> String {
    let l = c.lang;
    let body = format!(
        r#"<div class="card narrow"><h1>{title}</h1><p class="muted">{intro}</p>
<form id="cardform" data-client-secret="{cs}" data-key="{pk}">
<div id="card-element" style="margin:.6rem 0 1rem"></div><p id="error" role="alert" class="owed"></p>
<button class="primary" type="submit" id="confirm-card">{button}</button></form>
<p><a href="/my/">{back}</a></p></div>
<script nonce="{nonce}" src="{js}"></script>
<script nonce="{nonce}">
const f = document.getElementById('cardform');
const stripe = Stripe(f.dataset.key);
const card = stripe.elements().create('card');
card.mount('#card-element');
f.addEventListener('submit', async (e) => {{
  e.preventDefault();
  document.getElementById('confirm-card').disabled = true;
  const r = await stripe.confirmCardSetup(f.dataset.clientSecret, {{payment_method: {{card}}}});
  if (r.error) {{
    document.getElementById('error').textContent = (r.error && r.error.message) || 'error';
    document.getElementById('confirm-card').disabled = false;
  }} else {{
    window.location = '/my/card/done?setup_intent=' + encodeURIComponent(r.setupIntent.id);
  }}
}});
</script>"#,
        title = l.t("card_title"),
        intro = l.t("card_intro"),
        cs = esc(c.client_secret),
        pk = esc(c.publishable_key),
        button = l.t("card_save_button"),
        back = l.t("back"),
        nonce = esc(c.nonce),
        js = esc(c.js_url),
    );
    layout(l, c.brand, l.t("card_title"), Some((c.who, c.csrf)), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_dates_and_volumes_in_the_customers_terms() {
        assert_eq!(Lang::Nl.money("EUR", 123456), "€ 1.234,56");
        assert_eq!(Lang::En.money("EUR", 123456), "€1,234.56");
        assert_eq!(Lang::Nl.money("EUR", -5), "€ -0,05");
        assert_eq!(Lang::En.money("USD", 100), "USD1.00");
        // Half-up to cents: 0.125 → 0.13, 0.124999 → 0.12.
        assert_eq!(Lang::En.micros("EUR", 125_000), "€0.13");
        assert_eq!(Lang::En.micros("EUR", 124_999), "€0.12");
        assert_eq!(Lang::Nl.date("2026-12-05"), "05-12-2026");
        assert_eq!(Lang::En.date("2026-12-05"), "5 Dec 2026");
        assert_eq!(Lang::Nl.period("2026-03"), "maart 2026");
        assert_eq!(Lang::Nl.volume("seconds", 3725), "1:02:05");
        assert_eq!(Lang::En.volume("bytes", 1_234_567), "1.23 MB");
        assert_eq!(Lang::Nl.volume("bytes", 2_509_999_999), "2,50 GB");
        assert_eq!(Lang::Nl.volume("messages", 1), "1 bericht");
        assert_eq!(Lang::En.volume("messages", 3), "3 messages");
    }

    #[test]
    fn every_value_is_escaped() {
        let html = message(
            Lang::En,
            "<b>Brand</b>",
            "T\"x",
            "<script>alert(1)</script>",
            "",
        );
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;Brand&lt;/b&gt;"));
        assert!(html.contains("T&quot;x"));
    }
}
