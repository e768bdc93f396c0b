//! Accounts: the accounts CSV, validated per line, and the dense index used while rating.
//!
//! Required columns: `account_id,plan`. Optional: `name,street,postcode,city,country,
//! email,language,customer_type`, the payment columns `payment_method,iban,bic,
//! mandate_id,mandate_date`, the invoicing columns `vat_id,peppol_endpoint,itemised,
//! masking` and the delivery columns `delivery,peppol_id`. Columns may come in any order; unknown columns are refused so that a typo
//! never silently drops data. Every row is validated; an error names file and line.

use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::rate::tariff::Tariff;

/// An error in the accounts file, with its line.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("accounts {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("accounts {path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// One customer account.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub plan: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub street: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub postcode: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub city: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub country: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub language: String,
    /// `consumer` (default) or `business`: decides the late-payment rules.
    pub customer_type: CustomerType,
    /// `transfer` (default) or `direct_debit`.
    pub payment_method: PaymentMethod,
    /// The customer's IBAN, normalized (checked mod 97); required for direct debit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub iban: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bic: String,
    /// SEPA mandate reference; required for direct debit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mandate_id: String,
    /// Mandate signature date `YYYY-MM-DD`; required for direct debit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mandate_date: String,
    /// VAT identification number (businesses only), e.g. `BE0123456789`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vat_id: String,
    /// Peppol electronic address `scheme:id` (businesses only), e.g. `0106:12345678`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peppol_endpoint: String,
    /// The customer opted in to an itemised bill.
    pub itemised: bool,
    /// How many trailing digits of called numbers an itemised bill masks (0 = none).
    pub masking: u8,
    /// How issued documents reach the customer (`delivery` column; default `email`
    /// when the account has an email address, else `none`).
    pub delivery: DeliveryMethod,
    /// Peppol participant id for `peppol` delivery: `0106:<KvK number>` or
    /// `9944:<Dutch VAT ID>` (business accounts only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peppol_id: String,
    /// 1-based line in the accounts file.
    #[serde(skip)]
    pub line: u64,
}

/// Default number masking of itemised bills: the last 4 digits (privacy by default).
pub const DEFAULT_MASKING: u8 = 4;

/// Every column of the accounts file, in the order tollgate writes them.
pub const COLUMNS: [&str; 21] = [
    "account_id",
    "plan",
    "name",
    "street",
    "postcode",
    "city",
    "country",
    "email",
    "language",
    "customer_type",
    "payment_method",
    "iban",
    "bic",
    "mandate_id",
    "mandate_date",
    "vat_id",
    "peppol_endpoint",
    "itemised",
    "masking",
    "delivery",
    "peppol_id",
];

/// How issued documents (invoices, credit notes, final invoices) reach the customer.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMethod {
    /// An email with the PDF and the UBL attached.
    Email,
    /// The UBL document into the Peppol access point's pick-up folder.
    Peppol,
    /// Nothing is sent: printed and posted by the operator.
    #[default]
    None,
}

impl DeliveryMethod {
    /// The value as written in the accounts file.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMethod::Email => "email",
            DeliveryMethod::Peppol => "peppol",
            DeliveryMethod::None => "none",
        }
    }
}

/// How an account pays its invoices.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Bank transfer with the invoice's payment reference (or the EPC QR code).
    #[default]
    Transfer,
    /// SEPA Core Direct Debit under the account's mandate.
    DirectDebit,
    /// The card saved with the payment provider (`[psp]`), charged off-session by
    /// `collect` once the account has one (`payments card`).
    Card,
}

/// Consumer or business customer (Dutch late-payment law differs).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CustomerType {
    #[default]
    Consumer,
    Business,
}

impl PaymentMethod {
    /// The value as written in the accounts file.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Transfer => "transfer",
            PaymentMethod::DirectDebit => "direct_debit",
            PaymentMethod::Card => "card",
        }
    }
}

impl CustomerType {
    /// The value as written in the accounts file.
    pub fn name(self) -> &'static str {
        self.as_str()
    }

    /// The value as written in the accounts file.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerType::Consumer => "consumer",
            CustomerType::Business => "business",
        }
    }
}

impl Account {
    /// The account as one accounts-file row, in [`COLUMNS`] order (the array length
    /// ties the two together: a new column does not compile until it is written here).
    pub fn to_row(&self) -> [String; COLUMNS.len()] {
        [
            self.account_id.clone(),
            self.plan.clone(),
            self.name.clone(),
            self.street.clone(),
            self.postcode.clone(),
            self.city.clone(),
            self.country.clone(),
            self.email.clone(),
            self.language.clone(),
            self.customer_type.as_str().to_owned(),
            self.payment_method.as_str().to_owned(),
            self.iban.clone(),
            self.bic.clone(),
            self.mandate_id.clone(),
            self.mandate_date.clone(),
            self.vat_id.clone(),
            self.peppol_endpoint.clone(),
            if self.itemised { "yes" } else { "no" }.to_owned(),
            match self.masking {
                0 => "none".to_owned(),
                n => format!("last{n}"),
            },
            // The default (email when there is an address, else none) is left empty.
            if self.delivery == default_delivery(&self.email) {
                String::new()
            } else {
                self.delivery.as_str().to_owned()
            },
            self.peppol_id.clone(),
        ]
    }
}

/// All accounts, sorted by `account_id`.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub path: PathBuf,
    pub list: Vec<Account>,
}

impl Accounts {
    /// Reads and validates the accounts file.
    pub fn load(path: &Path) -> Result<Accounts, AccountsError> {
        let bytes = std::fs::read(path).map_err(|e| AccountsError::File {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Accounts::parse(path, &bytes)
    }

    /// Parses accounts CSV bytes; `path` names the file in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Accounts, AccountsError> {
        let line_err = |line: u64, message: String| AccountsError::Line {
            path: path.to_owned(),
            line,
            message,
        };
        let mut rdr = csv::ReaderBuilder::new().from_reader(bytes);
        let header = rdr
            .headers()
            .map_err(|e| line_err(1, format!("header: {e}")))?
            .clone();
        let mut pos = [usize::MAX; COLUMNS.len()];
        for (i, h) in header.iter().enumerate() {
            let h = h.trim();
            let c = COLUMNS.iter().position(|c| *c == h).ok_or_else(|| {
                line_err(
                    1,
                    format!("unknown column `{h}` (known: {})", COLUMNS.join(",")),
                )
            })?;
            if pos[c] != usize::MAX {
                return Err(line_err(1, format!("column `{h}` named twice")));
            }
            pos[c] = i;
        }
        for required in [0, 1] {
            if pos[required] == usize::MAX {
                return Err(line_err(
                    1,
                    format!("missing column `{}`", COLUMNS[required]),
                ));
            }
        }
        // Sized from the line count up front: an account is ~20 fields, and growing the
        // list by doubling copied it several times over at 100 000 accounts.
        let mut list = Vec::with_capacity(memchr::memchr_iter(b'\n', bytes).count() + 1);
        // One record buffer reused for every row.
        let mut rec = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Err(line_err(line, format!("not valid CSV: {e}")));
                }
            }
            let line = rec.position().map_or(0, |p| p.line());
            let field = |c: usize| -> &str {
                if pos[c] == usize::MAX {
                    ""
                } else {
                    rec.get(pos[c]).unwrap_or("").trim()
                }
            };
            let get = |c: usize| -> String { field(c).to_owned() };
            let mut a = Account {
                account_id: get(0),
                plan: get(1),
                name: get(2),
                street: get(3),
                postcode: get(4),
                city: get(5),
                country: get(6),
                email: get(7),
                language: get(8),
                customer_type: match field(9) {
                    "" | "consumer" => CustomerType::Consumer,
                    "business" => CustomerType::Business,
                    other => {
                        return Err(line_err(
                            line,
                            format!(
                                "column `customer_type`: `{other}` is not consumer or business"
                            ),
                        ))
                    }
                },
                payment_method: match field(10) {
                    "" | "transfer" => PaymentMethod::Transfer,
                    "direct_debit" => PaymentMethod::DirectDebit,
                    "card" => PaymentMethod::Card,
                    other => {
                        return Err(line_err(
                            line,
                            format!(
                                "column `payment_method`: `{other}` is not transfer, direct_debit or card"
                            ),
                        ))
                    }
                },
                iban: match field(11) {
                    "" => String::new(),
                    v => crate::rate::iban::check_iban(v)
                        .map_err(|m| line_err(line, format!("column `iban`: {m}")))?,
                },
                bic: match field(12) {
                    "" => String::new(),
                    v => crate::rate::iban::check_bic(v)
                        .map_err(|m| line_err(line, format!("column `bic`: {m}")))?,
                },
                mandate_id: get(13),
                mandate_date: get(14),
                line,
                ..Account::default()
            };
            if !a.mandate_id.is_empty()
                && (a.mandate_id.len() > 35
                    || !a
                        .mandate_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/-?:().,'+ ".contains(&b)))
            {
                return Err(line_err(
                    line,
                    format!(
                        "column `mandate_id`: `{}` must be 1-35 characters of the SEPA set (letters, digits, / - ? : ( ) . , ' + space)",
                        a.mandate_id
                    ),
                ));
            }
            if !a.mandate_date.is_empty()
                && chrono::NaiveDate::parse_from_str(&a.mandate_date, "%Y-%m-%d").is_err()
            {
                return Err(line_err(
                    line,
                    format!(
                        "column `mandate_date`: `{}` is not YYYY-MM-DD",
                        a.mandate_date
                    ),
                ));
            }
            if a.payment_method == PaymentMethod::DirectDebit {
                for (col, v) in [
                    ("iban", &a.iban),
                    ("mandate_id", &a.mandate_id),
                    ("mandate_date", &a.mandate_date),
                ] {
                    if v.is_empty() {
                        return Err(line_err(
                            line,
                            format!("column `{col}`: required for payment_method direct_debit"),
                        ));
                    }
                }
            }
            a.vat_id = get(15);
            a.peppol_endpoint = get(16);
            a.itemised = match field(17) {
                "" | "no" | "false" | "0" => false,
                "yes" | "true" | "1" => true,
                other => {
                    return Err(line_err(
                        line,
                        format!("column `itemised`: `{other}` is not yes or no"),
                    ))
                }
            };
            a.masking = parse_masking(field(18))
                .map_err(|m| line_err(line, format!("column `masking`: {m}")))?;
            a.peppol_id = get(20);
            a.delivery = match field(19) {
                "" => default_delivery(&a.email),
                "email" => DeliveryMethod::Email,
                "peppol" => DeliveryMethod::Peppol,
                "none" => DeliveryMethod::None,
                other => {
                    return Err(line_err(
                        line,
                        format!("column `delivery`: `{other}` is not email, peppol or none"),
                    ))
                }
            };
            if a.delivery == DeliveryMethod::Email && a.email.is_empty() {
                return Err(line_err(
                    line,
                    "column `delivery`: email needs an address in the `email` column".into(),
                ));
            }
            if a.delivery == DeliveryMethod::Peppol && a.peppol_id.is_empty() {
                return Err(line_err(
                    line,
                    "column `delivery`: peppol needs the `peppol_id` column".into(),
                ));
            }
            if a.account_id.is_empty()
                || a.account_id.len() > 64
                || a.account_id
                    .bytes()
                    .any(|b| b.is_ascii_control() || b == b',' || b == b'"')
            {
                return Err(line_err(
                    line,
                    format!("column `account_id`: `{}` must be 1-64 printable characters without `,` or `\"`", a.account_id),
                ));
            }
            if a.plan.is_empty() {
                return Err(line_err(line, "column `plan`: must not be empty".into()));
            }
            if !a.country.is_empty()
                && (a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(line_err(
                    line,
                    format!(
                        "column `country`: `{}` is not an ISO 3166 alpha-2 code",
                        a.country
                    ),
                ));
            }
            if !a.language.is_empty() && a.language != "nl" && a.language != "en" {
                return Err(line_err(
                    line,
                    format!("column `language`: `{}` is not nl or en", a.language),
                ));
            }
            if !a.vat_id.is_empty() {
                if a.customer_type != CustomerType::Business {
                    return Err(line_err(
                        line,
                        "column `vat_id`: only business accounts carry a VAT ID (set customer_type to business)".into(),
                    ));
                }
                check_vat_id(&a.vat_id, &a.country)
                    .map_err(|m| line_err(line, format!("column `vat_id`: {m}")))?;
            }
            if !a.peppol_endpoint.is_empty() {
                if a.customer_type != CustomerType::Business {
                    return Err(line_err(
                        line,
                        "column `peppol_endpoint`: only business accounts have a Peppol endpoint"
                            .into(),
                    ));
                }
                check_endpoint(&a.peppol_endpoint)
                    .map_err(|m| line_err(line, format!("column `peppol_endpoint`: {m}")))?;
            }
            if !a.peppol_id.is_empty() {
                if a.customer_type != CustomerType::Business {
                    return Err(line_err(
                        line,
                        "column `peppol_id`: only business accounts are reached through Peppol"
                            .into(),
                    ));
                }
                check_peppol_id(&a.peppol_id)
                    .map_err(|m| line_err(line, format!("column `peppol_id`: {m}")))?;
                if !a.peppol_endpoint.is_empty() && a.peppol_endpoint != a.peppol_id {
                    return Err(line_err(
                        line,
                        format!(
                            "column `peppol_id`: `{}` differs from peppol_endpoint `{}` (the UBL names one endpoint)",
                            a.peppol_id, a.peppol_endpoint
                        ),
                    ));
                }
            }
            list.push(a);
        }
        // Files are usually kept in id order already; checking costs one pass.
        if !list.is_sorted_by(|a, b| a.account_id <= b.account_id) {
            list.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        }
        for w in list.windows(2) {
            if w[0].account_id == w[1].account_id {
                return Err(line_err(
                    w[1].line.max(w[0].line),
                    format!(
                        "account `{}` also on line {}",
                        w[0].account_id,
                        w[1].line.min(w[0].line)
                    ),
                ));
            }
        }
        Ok(Accounts {
            path: path.to_owned(),
            list,
        })
    }

    /// Finds an account by id.
    pub fn get(&self, id: &str) -> Option<&Account> {
        self.list
            .binary_search_by(|a| a.account_id.as_str().cmp(id))
            .ok()
            .map(|i| &self.list[i])
    }
}

/// `none` → 0, `lastN` (N = 1..=8) → N, empty → [`DEFAULT_MASKING`].
fn parse_masking(s: &str) -> Result<u8, String> {
    match s {
        "" => Ok(DEFAULT_MASKING),
        "none" => Ok(0),
        _ => s
            .strip_prefix("last")
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| (1..=8).contains(n))
            .ok_or_else(|| format!("`{s}` is not none or last1 .. last8")),
    }
}

/// A VAT ID: 2-letter country prefix (`EL` for Greece) then 2-13 letters or digits; the
/// prefix must match the account's country; Dutch ids are `NL` + 9 digits + `B` + 2 digits.
pub fn check_vat_id(id: &str, country: &str) -> Result<(), String> {
    let b = id.as_bytes();
    if b.len() < 4
        || b.len() > 15
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(format!(
            "`{id}` is not a VAT ID (country prefix, then 2-13 capital letters or digits, no spaces)"
        ));
    }
    let prefix = &id[..2];
    let expect = if country == "GR" { "EL" } else { country };
    if !country.is_empty() && prefix != expect {
        return Err(format!(
            "`{id}` does not start with the account's country {country} (`{expect}`)"
        ));
    }
    if prefix == "NL"
        && !(b.len() == 14
            && b[2..11].iter().all(u8::is_ascii_digit)
            && b[11] == b'B'
            && b[12..].iter().all(u8::is_ascii_digit))
    {
        return Err(format!(
            "`{id}` is not a Dutch VAT ID (NL, 9 digits, B, 2 digits)"
        ));
    }
    Ok(())
}

/// The default delivery: `email` when the account has an address, else `none`.
pub fn default_delivery(email: &str) -> DeliveryMethod {
    if email.is_empty() {
        DeliveryMethod::None
    } else {
        DeliveryMethod::Email
    }
}

/// A Dutch Peppol participant id: `0106:` and an 8-digit KvK number, or `9944:` and a
/// Dutch VAT ID (`NL`, 9 digits, `B`, 2 digits).
pub fn check_peppol_id(e: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{e}` is not 0106:<8-digit KvK number> or 9944:<Dutch VAT ID, e.g. NL123456789B01>"
        )
    };
    match e.split_once(':') {
        Some(("0106", id)) if id.len() == 8 && id.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        Some(("9944", id)) if id.starts_with("NL") => check_vat_id(id, "NL").map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A Peppol endpoint `scheme:id`: a 4-digit EAS scheme code, then 1-100 printable characters.
pub fn check_endpoint(e: &str) -> Result<(), String> {
    let bad = || format!("`{e}` is not scheme:id with a 4-digit EAS scheme, e.g. 0106:12345678");
    let (scheme, id) = e.split_once(':').ok_or_else(bad)?;
    if scheme.len() != 4
        || !scheme.bytes().all(|b| b.is_ascii_digit())
        || id.is_empty()
        || id.len() > 100
        || id.bytes().any(|b| !b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(())
}

/// The dense index used on the hot path: account id bytes → (account index, plan index).
///
/// Ids of up to 15 bytes (the common case) are packed with their length into a `u128`
/// and kept in an open-addressing table whose slot holds the key, the account index and
/// its plan side by side: a lookup is one probe, usually one cache line, and
/// [`AccountIndex::prefetch`] lets the rater start that load early. Longer ids use a
/// byte-string map.
#[derive(Debug)]
pub struct AccountIndex {
    slots: SlotTable,
    mask: usize,
    long: FxHashMap<Box<[u8]>, (u32, u32)>,
    ids: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: u128,
    account: u32,
    plan: u32,
}

/// No packed id has length byte 0xff.
const FREE: u128 = u128::MAX;

const FREE_SLOT: Slot = Slot {
    key: FREE,
    account: 0,
    plan: 0,
};

/// Bytes of a transparent huge page (x86-64, aarch64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// The open-addressing table, on transparent huge pages where the kernel allows them.
///
/// Rating probes one random slot per record. With 4 KiB pages, a table of 100 000
/// accounts (8 MiB) spans 2 048 pages, more than the TLB maps, so most probes paid a page
/// walk on top of the cache miss, and the prefetch issued one line ahead stalled on it
/// (`perf annotate`: a quarter of the worker loop's samples). On 2 MiB pages the table
/// is four TLB entries. The slots live in a `Vec` with room to start at a 2 MiB
/// boundary; the kernel is asked for huge pages before the slots are first written,
/// since only page faults after the advice get them. Without huge pages (the advice
/// refused, THP off) the table works the same, only slower.
#[derive(Debug)]
struct SlotTable {
    buf: Vec<Slot>,
    start: usize,
    len: usize,
}

impl SlotTable {
    fn new(len: usize) -> SlotTable {
        let bytes = len * std::mem::size_of::<Slot>();
        if bytes < HUGE_PAGE {
            return SlotTable {
                buf: vec![FREE_SLOT; len],
                start: 0,
                len,
            };
        }
        let spare = HUGE_PAGE / std::mem::size_of::<Slot>();
        let mut buf: Vec<Slot> = Vec::with_capacity(len + spare);
        let addr = buf.as_ptr() as usize;
        let aligned = addr.next_multiple_of(HUGE_PAGE);
        let start = (aligned - addr) / std::mem::size_of::<Slot>();
        #[cfg(target_os = "linux")]
        // SAFETY: madvise only passes a hint about a range inside this allocation (the
        // capacity spans `start..start + len` slots, `bytes` long); it changes no memory
        // contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        buf.resize(start + len, FREE_SLOT);
        SlotTable { buf, start, len }
    }
}

impl std::ops::Deref for SlotTable {
    type Target = [Slot];
    #[inline]
    fn deref(&self) -> &[Slot] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for SlotTable {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Slot] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[inline]
fn slot_of(key: u128, mask: usize) -> usize {
    mix64(key as u64 ^ mix64((key >> 64) as u64)) as usize & mask
}

impl AccountIndex {
    /// Resolves every account's plan in `tariff`; an unknown plan is an error naming the line.
    pub fn build(accounts: &Accounts, tariff: &Tariff) -> Result<AccountIndex, AccountsError> {
        let cap = (accounts.list.len() * 2).next_power_of_two().max(16);
        let mut slots = SlotTable::new(cap);
        let mask = cap - 1;
        let mut long = FxHashMap::default();
        let mut ids = Vec::with_capacity(accounts.list.len());
        for (i, a) in accounts.list.iter().enumerate() {
            let p = tariff
                .plan_index(&a.plan)
                .ok_or_else(|| AccountsError::Line {
                    path: accounts.path.clone(),
                    line: a.line,
                    message: format!("column `plan`: no plan `{}` in the tariff", a.plan),
                })?;
            match pack(a.account_id.as_bytes()) {
                Some(key) => {
                    let mut s = slot_of(key, mask);
                    while slots[s].key != FREE {
                        s = (s + 1) & mask;
                    }
                    slots[s] = Slot {
                        key,
                        account: i as u32,
                        plan: p,
                    };
                }
                None => {
                    long.insert(a.account_id.as_bytes().into(), (i as u32, p));
                }
            }
            ids.push(a.account_id.clone());
        }
        Ok(AccountIndex {
            slots,
            mask,
            long,
            ids,
        })
    }

    /// Starts loading the slot of `id` into the cache (a hint; no effect on results).
    #[inline]
    pub fn prefetch(&self, id: &[u8]) {
        if let Some(key) = pack(id) {
            crate::rate::hint::prefetch(&self.slots[slot_of(key, self.mask)]);
        }
    }

    /// The dense index and plan of an account id.
    #[inline]
    pub fn find(&self, id: &[u8]) -> Option<(u32, u32)> {
        match pack(id) {
            Some(key) => {
                let mut s = slot_of(key, self.mask);
                loop {
                    let slot = &self.slots[s];
                    if slot.key == key {
                        return Some((slot.account, slot.plan));
                    }
                    if slot.key == FREE {
                        return None;
                    }
                    s = (s + 1) & self.mask;
                }
            }
            None => self.long.get(id).copied(),
        }
    }

    /// The id of a dense account index.
    pub fn id(&self, account: u32) -> &str {
        &self.ids[account as usize]
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Packs an id of at most 15 bytes with its length into one integer: the bytes in
/// little-endian order, the length in the top byte. Built from overlapping word loads
/// (no byte copy through memory: this runs twice per record).
#[inline]
fn pack(id: &[u8]) -> Option<u128> {
    let n = id.len();
    if n > 15 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(id[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u32::from_le_bytes(id[i..i + 4].try_into().expect("4 bytes")) as u64;
    let (lo, hi) = if n >= 8 {
        // Bytes 8..n are the top n-8 bytes of the word ending at n.
        (
            word(0),
            word(n - 8).checked_shr(8 * (16 - n) as u32).unwrap_or(0),
        )
    } else if n >= 4 {
        // Two overlapping halves; overlapping bytes are equal, so OR joins them.
        (half(0) | half(n - 4) << (8 * (n - 4)), 0)
    } else if n > 0 {
        let v = id[0] as u64
            | (id[n / 2] as u64) << (8 * (n / 2))
            | (id[n - 1] as u64) << (8 * (n - 1));
        (v, 0)
    } else {
        (0, 0)
    };
    Some(lo as u128 | (hi as u128) << 64 | (n as u128) << 120)
}

/// The MurmurHash3 64-bit finalizer: every input bit affects every output bit, so the
/// low bits used as a slot index are well spread even for ids that share a prefix.
#[inline]
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_is_bytes_then_length() {
        let bytes: Vec<u8> = (1..=16).map(|b| b * 17).collect();
        for n in 0..=15 {
            let mut b = [0u8; 16];
            b[..n].copy_from_slice(&bytes[..n]);
            b[15] = n as u8;
            assert_eq!(
                pack(&bytes[..n]),
                Some(u128::from_le_bytes(b)),
                "length {n}"
            );
        }
        assert_eq!(pack(&bytes), None);
    }

    fn parse(s: &str) -> Result<Accounts, AccountsError> {
        Accounts::parse(Path::new("accounts.csv"), s.as_bytes())
    }

    #[test]
    fn minimal_and_full_files_load() {
        let a = parse("account_id,plan\nB,basic\nA,basic\n").unwrap();
        assert_eq!(a.list[0].account_id, "A");
        assert_eq!(a.get("B").unwrap().line, 2);
        let a = parse("plan,account_id,name,city,country\nbasic,A,\"Jansen, P.\",Utrecht,NL\n")
            .unwrap();
        assert_eq!(a.list[0].name, "Jansen, P.");
    }

    #[test]
    fn packed_ids_are_distinct() {
        assert_ne!(pack(b"A"), pack(b"A\0"));
        assert_eq!(pack(&[b'x'; 16]), None);
        assert!(pack(&[b'x'; 15]).is_some());
        assert!(pack(b"").is_some());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("account_id,plan\nA,basic\nA,basic\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "accounts accounts.csv:3: account `A` also on line 2");
        let e = parse("account_id,plan,colour\n").unwrap_err().to_string();
        assert!(e.contains("unknown column `colour`"), "{e}");
        let e = parse("account_id,plan,country\nA,basic,Netherlands\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("accounts accounts.csv:2: column `country`"),
            "{e}"
        );
        let e = parse("account_id\nA\n").unwrap_err().to_string();
        assert!(e.contains("missing column `plan`"), "{e}");
    }

    #[test]
    fn payment_columns() {
        let a = parse(
            "account_id,plan,payment_method,iban,bic,mandate_id,mandate_date,customer_type\n\
             A,basic,direct_debit,nl91 abna 0417 1643 00,abnanl2a,M-1,2025-01-31,business\n\
             B,basic,transfer,,,,,\n\
             C,basic,,DE89370400440532013000,,,,\n",
        )
        .unwrap();
        let x = a.get("A").unwrap();
        assert_eq!(x.payment_method, PaymentMethod::DirectDebit);
        assert_eq!(x.iban, "NL91ABNA0417164300");
        assert_eq!(x.bic, "ABNANL2A");
        assert_eq!(x.customer_type, CustomerType::Business);
        assert_eq!(a.get("B").unwrap().payment_method, PaymentMethod::Transfer);
        assert_eq!(a.get("C").unwrap().customer_type, CustomerType::Consumer);
        for (text, want) in [
            (
                "account_id,plan,iban\nA,basic,NL91ABNA0417164300\nB,basic,NL92ABNA0417164300\n",
                "accounts accounts.csv:3: column `iban`: `NL************4300` is not a valid IBAN: check digits do not match (mod 97)",
            ),
            (
                "account_id,plan,payment_method,iban\nA,basic,direct_debit,NL91ABNA0417164300\n",
                "accounts accounts.csv:2: column `mandate_id`: required for payment_method direct_debit",
            ),
            (
                "account_id,plan,payment_method\nA,basic,cash\n",
                "accounts accounts.csv:2: column `payment_method`: `cash` is not transfer, direct_debit or card",
            ),
            (
                "account_id,plan,mandate_date\nA,basic,31-01-2025\n",
                "accounts accounts.csv:2: column `mandate_date`: `31-01-2025` is not YYYY-MM-DD",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn invoicing_columns() {
        let a = parse(
            "account_id,plan,country,customer_type,vat_id,peppol_endpoint,itemised,masking\n\
             A,basic,NL,,,,,\n\
             B,basic,BE,business,BE0123456789,0208:0123456789,yes,none\n\
             C,basic,GR,business,EL123456789,,no,last2\n",
        )
        .unwrap();
        let (a0, b, c) = (&a.list[0], &a.list[1], &a.list[2]);
        assert_eq!(a0.customer_type, CustomerType::Consumer);
        assert!(!a0.itemised);
        assert_eq!(a0.masking, DEFAULT_MASKING);
        assert_eq!(b.customer_type, CustomerType::Business);
        assert_eq!(b.vat_id, "BE0123456789");
        assert_eq!(b.peppol_endpoint, "0208:0123456789");
        assert!(b.itemised);
        assert_eq!(b.masking, 0);
        assert_eq!(c.masking, 2);
        let head =
            "account_id,plan,country,customer_type,vat_id,peppol_endpoint,itemised,masking\n";
        for (row, want) in [
            ("A,basic,NL,person,,,,", "accounts.csv:2: column `customer_type`: `person` is not consumer or business"),
            ("A,basic,NL,,NL123456789B01,,,", "accounts.csv:2: column `vat_id`: only business accounts carry a VAT ID"),
            ("A,basic,NL,business,NL12345678B01,,,", "accounts.csv:2: column `vat_id`: `NL12345678B01` is not a Dutch VAT ID"),
            ("A,basic,DE,business,BE0123456789,,,", "accounts.csv:2: column `vat_id`: `BE0123456789` does not start with the account's country DE"),
            ("A,basic,DE,business,DE 123456789,,,", "accounts.csv:2: column `vat_id`: `DE 123456789` is not a VAT ID"),
            ("A,basic,NL,,,0106:123,,", "accounts.csv:2: column `peppol_endpoint`: only business accounts"),
            ("A,basic,NL,business,,106:123,,", "accounts.csv:2: column `peppol_endpoint`: `106:123` is not scheme:id"),
            ("A,basic,NL,,,,maybe,", "accounts.csv:2: column `itemised`: `maybe` is not yes or no"),
            ("A,basic,NL,,,,,last9", "accounts.csv:2: column `masking`: `last9` is not none or last1 .. last8"),
        ] {
            let e = parse(&format!("{head}{row}\n")).unwrap_err().to_string();
            assert!(e.starts_with(&format!("accounts {want}")), "{row}: {e}");
        }
    }

    #[test]
    fn peppol_ids_are_kvk_or_dutch_vat_numbers() {
        assert_eq!(check_peppol_id("0106:12345678"), Ok(()));
        assert_eq!(check_peppol_id("9944:NL123456789B01"), Ok(()));
        for bad in [
            "0106:1234567",
            "0106:123456789",
            "0106:1234567a",
            "9944:NL12345678B01",
            "9944:BE0123456789",
            "0088:1234567890123",
            "12345678",
            "",
        ] {
            assert!(check_peppol_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn delivery_defaults_to_email_when_there_is_an_address() {
        let a = parse(
            "account_id,plan,email,customer_type,delivery,peppol_id\n\
             A,p,a@x.nl,,,\n\
             B,p,,,,\n\
             C,p,c@x.nl,,none,\n\
             D,p,,business,peppol,0106:12345678\n",
        )
        .unwrap();
        let d: Vec<_> = a.list.iter().map(|a| a.delivery).collect();
        use DeliveryMethod::*;
        assert_eq!(d, [Email, None, None, Peppol]);
        // Written back: the default stays empty, a chosen value is kept.
        let rows: Vec<String> = a.list.iter().map(|a| a.to_row()[19].clone()).collect();
        assert_eq!(rows, ["", "", "none", "peppol"]);
        // The delivery id is the UBL endpoint when none is named apart.
        assert_eq!(a.list[3].peppol_id, "0106:12345678");
    }
}
