//! Sync schedules: standard cron expressions, as the Go operator accepted them, on top of the `cron` crate.
//!
//! [`Schedule::parse`] accepts
//! - a standard 5-field expression `minute hour day-of-month month day-of-week` (what `schedule` and
//!   `defaultSchedule` meant in the Go operator): weekdays `0`–`7` (`0` and `7` are Sunday) or `SUN`–`SAT`;
//!   lists, ranges and steps in every field; names of months and weekdays;
//! - a 6-field expression with **leading seconds** (`*/5 * * * * *`: every five seconds) — our extension,
//!   handy for tests; its other five fields mean what they mean in the 5-field form;
//! - the descriptors `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`, and
//!   `@every <duration>` (e.g. `@every 90s`, `@every 1h30m`), as the Go operator's cron library did.
//!
//! Times are UTC. When both day-of-month and day-of-week are restricted, a day matches when **either**
//! matches (standard cron), not both.
//!
//! # Why not hand the expression to the `cron` crate as it is
//! The `cron` crate expects a seconds field first and numbers weekdays `1`–`7` from **Sunday** (`1` =
//! Sunday), while standard cron numbers them `0`–`6` from Sunday (`1` = Monday). Passing `0 9 * * 1`
//! through unchanged would sync on Sundays instead of Mondays. So the day-of-week field is expanded here to
//! the explicit set of days and written back in the crate's numbering, and the day-of-month/day-of-week
//! "either" rule is implemented by evaluating the two restrictions separately.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, TimeZone, Utc};

/// A parsed schedule (see the module docs for the accepted forms).
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// One cron schedule, or two whose union is the schedule (day-of-month OR day-of-week).
    Cron(Vec<cron::Schedule>),
    /// `@every <duration>`: a fixed interval from the previous run.
    Every(Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expression).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

/// Why an expression is not a valid schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {expression:?}: {reason}")]
pub struct ScheduleError {
    /// The expression as written.
    pub expression: String,
    /// What is wrong with it.
    pub reason: String,
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parse a schedule (see the module docs).
    ///
    /// # Errors
    /// [`ScheduleError`] naming the problem (field count, an out-of-range value, an unknown name …).
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let trimmed = expression.trim();
        if let Some(rest) = trimmed.strip_prefix('@') {
            let (word, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let five = match word.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                "every" => {
                    let every =
                        crate::config::parse_duration(arg.trim()).map_err(|e| err(format!("@every: {e}")))?;
                    if every < Duration::from_secs(1) {
                        return Err(err("@every needs at least 1s".into()));
                    }
                    return Ok(Schedule {
                        expression: expression.to_owned(),
                        kind: Kind::Every(every),
                    });
                }
                other => return Err(err(format!("unknown descriptor @{other}"))),
            };
            return Self::from_fields(expression, "0", &five.split(' ').collect::<Vec<_>>());
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        match fields.len() {
            5 => Self::from_fields(expression, "0", &fields),
            6 => Self::from_fields(expression, fields[0], &fields[1..]),
            n => Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, got {n}"
            ))),
        }
    }

    /// `fields`: minute, hour, day-of-month, month, day-of-week (standard numbering).
    fn from_fields(expression: &str, seconds: &str, fields: &[&str]) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let (minute, hour, dom, month, dow) = (fields[0], fields[1], fields[2], fields[3], fields[4]);
        let days = weekdays(dow).map_err(|e| err(format!("day-of-week {dow:?}: {e}")))?;
        // The cron crate's names are unambiguous; numbers would not be (see the module docs).
        let dow_names = if days.len() == 7 {
            "*".to_owned()
        } else {
            days.iter()
                .map(|d| WEEKDAYS[*d as usize])
                .collect::<Vec<_>>()
                .join(",")
        };
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule, ScheduleError> {
            let six = format!("{seconds} {minute} {hour} {dom} {month} {dow}");
            cron::Schedule::from_str(&six).map_err(|e| err(e.to_string()))
        };
        let dom_restricted = !is_star(dom);
        let dow_restricted = !is_star(dow) && days.len() < 7;
        let schedules = if dom_restricted && dow_restricted {
            // Standard cron: the day matches when either field matches.
            vec![build(dom, "*")?, build("*", &dow_names)?]
        } else {
            vec![build(dom, &dow_names)?]
        };
        Ok(Schedule {
            expression: expression.to_owned(),
            kind: Kind::Cron(schedules),
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first time strictly after `after` that the schedule fires; `None` if it never fires again (an
    /// impossible date such as `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
            Kind::Cron(schedules) => schedules.iter().filter_map(|s| s.after(&after).next()).min(),
        }
    }

    /// [`Schedule::next_after`] for a time given as seconds since the Unix epoch.
    pub fn next_after_unix(&self, after_secs: i64) -> Option<i64> {
        let after = Utc.timestamp_opt(after_secs, 0).single()?;
        self.next_after(after).map(|t| t.timestamp())
    }

    /// The interval between the two runs after `after` (for sizing jitter); `None` if there are not two.
    pub fn interval_after(&self, after: DateTime<Utc>) -> Option<Duration> {
        let first = self.next_after(after)?;
        let second = self.next_after(first)?;
        (second - first).to_std().ok()
    }
}

fn is_star(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Expand a standard day-of-week field to the set of days (0 = Sunday … 6 = Saturday).
fn weekdays(field: &str) -> Result<Vec<u8>, String> {
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s.parse().map_err(|_| format!("invalid step {s:?}"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if is_star(range) {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (weekday(a)?, weekday(b)?);
            // `5-7` / `FRI-SUN` (Friday to Sunday) are valid: Sunday also ends the week.
            let b = if b == 0 && a > 0 { 7 } else { b };
            if a > b {
                return Err(format!("range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let d = weekday(range)?;
            // `1/2` means from 1 to the end, stepping by 2.
            if part.contains('/') { (d, 6) } else { (d, d) }
        };
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    Ok((0..7u8).filter(|d| days[*d as usize]).collect())
}

fn weekday(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        return match n {
            0..=6 => Ok(n),
            7 => Ok(0),
            _ => Err(format!("{n} is not a weekday (0-7)")),
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.get(..3).unwrap_or(&upper);
    WEEKDAYS
        .iter()
        .position(|w| *w == name)
        .map(|p| p as u8)
        .ok_or_else(|| format!("{s:?} is not a weekday"))
}

/// A duration as the schema's pattern wants it: `1h2m3s`, `45s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Timelike, Weekday};
    use rstest::rstest;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Next run after Sunday 2026-11-22 12:00 UTC.
    fn next(expr: &str) -> DateTime<Utc> {
        Schedule::parse(expr)
            .unwrap()
            .next_after(at("2026-11-22T12:00:00Z"))
            .unwrap()
    }

    /// Weekdays in standard numbering (0 = Sunday): the cron crate numbers them from 1, so each of these
    /// would land a day off without the normalisation.
    #[rstest]
    #[case::sunday_0("0 9 * * 0", Weekday::Sun, "2026-11-29T09:00:00Z")]
    #[case::sunday_7("0 9 * * 7", Weekday::Sun, "2026-11-29T09:00:00Z")]
    #[case::monday("0 9 * * 1", Weekday::Mon, "2026-11-23T09:00:00Z")]
    #[case::tuesday("0 9 * * 2", Weekday::Tue, "2026-11-24T09:00:00Z")]
    #[case::wednesday("0 9 * * 3", Weekday::Wed, "2026-11-25T09:00:00Z")]
    #[case::thursday("0 9 * * 4", Weekday::Thu, "2026-11-26T09:00:00Z")]
    #[case::friday("0 9 * * 5", Weekday::Fri, "2026-11-27T09:00:00Z")]
    #[case::saturday("0 9 * * 6", Weekday::Sat, "2026-11-28T09:00:00Z")]
    #[case::names("0 9 * * MON", Weekday::Mon, "2026-11-23T09:00:00Z")]
    #[case::weekdays_range("0 9 * * 1-5", Weekday::Mon, "2026-11-23T09:00:00Z")]
    #[case::weekend_range_to_7("0 13 * * 6-7", Weekday::Sun, "2026-11-22T13:00:00Z")]
    #[case::name_range("0 9 * * sat-sun", Weekday::Sat, "2026-11-28T09:00:00Z")]
    #[case::list("0 9 * * 2,4", Weekday::Tue, "2026-11-24T09:00:00Z")]
    #[case::step("0 9 * * 1-5/2", Weekday::Mon, "2026-11-23T09:00:00Z")]
    #[case::six_fields("30 0 9 * * 1", Weekday::Mon, "2026-11-23T09:00:30Z")]
    #[case::weekly("@weekly", Weekday::Sun, "2026-11-29T00:00:00Z")]
    fn weekday_schedules(#[case] expr: &str, #[case] day: Weekday, #[case] want: &str) {
        let got = next(expr);
        assert_eq!(got.weekday(), day, "{expr}");
        assert_eq!(got, at(want), "{expr}");
    }

    #[test]
    fn weekday_sets_are_the_standard_ones() {
        assert_eq!(weekdays("*").unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(weekdays("1-5").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(weekdays("1-5/2").unwrap(), vec![1, 3, 5]);
        assert_eq!(weekdays("*/2").unwrap(), vec![0, 2, 4, 6]);
        assert_eq!(weekdays("5-7").unwrap(), vec![0, 5, 6]);
        assert_eq!(weekdays("0,7").unwrap(), vec![0]);
        assert_eq!(weekdays("2/3").unwrap(), vec![2, 5]);
    }

    #[test]
    fn every_weekday_in_a_week_of_runs() {
        // `0 9 * * 1-5` fires on exactly Monday to Friday.
        let s = Schedule::parse("0 9 * * 1-5").unwrap();
        let mut t = at("2026-11-22T00:00:00Z");
        let mut days = Vec::new();
        for _ in 0..5 {
            t = s.next_after(t).unwrap();
            days.push(t.weekday());
        }
        assert_eq!(
            days,
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Standard cron: the 1st of the month OR any Monday.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        let first = s.next_after(at("2026-11-22T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-11-23T00:00:00Z"), "the next Monday");
        let after_last_monday = s.next_after(at("2026-11-30T12:00:00Z")).unwrap();
        assert_eq!(after_last_monday, at("2026-12-01T00:00:00Z"), "the 1st");
    }

    #[rstest]
    #[case("*/5 * * * *", "2026-11-22T12:05:00Z")]
    #[case("*/2 * * * * *", "2026-11-22T12:00:02Z")]
    #[case("0 */6 * * *", "2026-11-22T18:00:00Z")]
    #[case("@hourly", "2026-11-22T13:00:00Z")]
    #[case("@daily", "2026-11-23T00:00:00Z")]
    #[case("@monthly", "2026-12-01T00:00:00Z")]
    #[case("@every 90s", "2026-11-22T12:01:30Z")]
    #[case("15 10 * * *", "2026-11-23T10:15:00Z")]
    fn next_runs(#[case] expr: &str, #[case] want: &str) {
        assert_eq!(next(expr), at(want), "{expr}");
    }

    #[rstest]
    #[case("")]
    #[case("* * * *")]
    #[case("* * * * * * *")]
    #[case("61 * * * *")]
    #[case("* 24 * * *")]
    #[case("* * * * 8")]
    #[case("* * * * FUNDAY")]
    #[case("* * * * 5-1")]
    #[case("* * * * */0")]
    #[case("@fortnightly")]
    #[case("@every")]
    #[case("@every 0s")]
    #[case("not a schedule")]
    fn invalid_expressions_are_errors(#[case] expr: &str) {
        let e = Schedule::parse(expr).unwrap_err();
        assert_eq!(e.expression, expr);
        assert!(!e.reason.is_empty());
    }

    #[test]
    fn intervals_and_unix_times() {
        let s = Schedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            s.interval_after(at("2026-11-22T12:00:00Z")),
            Some(Duration::from_secs(2))
        );
        let t = at("2026-11-22T12:00:01Z").timestamp();
        assert_eq!(s.next_after_unix(t), Some(t + 1));
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(never.next_after(at("2026-11-22T12:00:00Z")), None);
        assert_eq!(next("0 12 * * *").hour(), 12);
    }
}
