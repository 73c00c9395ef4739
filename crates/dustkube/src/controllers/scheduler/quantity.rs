//! Kubernetes resource quantities (`100m`, `0.5`, `1Gi`, `128M`, `1e3`) as exact milli-units,
//! rounded up like `Quantity.MilliValue`.

use serde_json::Value;

/// Parses a quantity into milli-units: `"100m"` → 100, `"2"` → 2000, `"1Ki"` → 1_024_000.
pub fn parse_milli(s: &str) -> Result<i128, String> {
    let bad = || {
        format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {s:?}")
    };
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(bad());
    }
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    // value = mantissa * base^power * 10^exp10 / 10^frac_len; we want it * 1000.
    let (binary_power, exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse::<i32>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    let too_big = || format!("quantity too large: {s:?}");
    mantissa = mantissa
        .checked_mul(1i128 << binary_power)
        .ok_or_else(too_big)?;
    let scale = exp10 + 3 - frac_part.len() as i32;
    let value = if scale >= 0 {
        let f = 10i128.checked_pow(scale as u32).ok_or_else(too_big)?;
        mantissa.checked_mul(f).ok_or_else(too_big)?
    } else {
        match 10i128.checked_pow((-scale) as u32) {
            Some(d) => (mantissa + d - 1) / d,
            None => i128::from(mantissa > 0),
        }
    };
    Ok(if negative { -value } else { value })
}

/// A quantity given as a JSON string or number, in milli-units; `None` when absent or invalid.
pub fn milli_of(v: Option<&Value>) -> Option<i128> {
    match v? {
        Value::String(s) => parse_milli(s).ok(),
        Value::Number(n) => parse_milli(&n.to_string()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli(".25"), Ok(250));
        assert_eq!(parse_milli("1Ki"), Ok(1024 * 1000));
        assert_eq!(parse_milli("1.5Gi"), Ok(1_610_612_736_000));
        assert_eq!(parse_milli("128M"), Ok(128_000_000_000));
        assert_eq!(parse_milli("4k"), Ok(4_000_000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("1E3"), Ok(1_000_000));
        assert_eq!(parse_milli("2E"), Ok(2_000_000_000_000_000_000_000));
        assert_eq!(parse_milli("1n"), Ok(1), "rounded up");
        assert_eq!(parse_milli("-1"), Ok(-1000));
        assert!(parse_milli("").is_err());
        assert!(parse_milli("1Qi").is_err());
        assert!(parse_milli("abc").is_err());
        assert_eq!(milli_of(Some(&serde_json::json!(3))), Some(3000));
        assert_eq!(milli_of(Some(&serde_json::json!("250m"))), Some(250));
        assert_eq!(milli_of(None), None);
    }
}
