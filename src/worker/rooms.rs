//! Which open connections are in which room, so that a broadcast goes
//! to its receivers without looking at every connection of the worker.
//!
//! Each open connection is a member of three sets, one per broadcast
//! scope ([`SCOPES`]): everyone, its route template, and its room (the
//! route with its parameter values, e.g. `/chat/{room}` with `lobby`). A
//! set is a list of slots, and a connection remembers its place in each
//! ([`Places`]), so that leaving costs the same in a room of ten as in a
//! room of a million: the last member takes the leaver's place.

use std::collections::HashMap;

use crate::handler::{ConnInfo, Scope};
use crate::relay::RoomKey;

/// The scopes, in the order of a connection's [`Places`].
const SCOPES: [Scope; 3] = [Scope::All, Scope::Route, Scope::Room];

/// A connection's places in its three sets (see the module comment).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Places([usize; 3]);

/// A member that took a leaver's place: its slot, which of its places
/// moved (an index of [`SCOPES`]) and to where.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moved {
    pub slot: usize,
    pub scope: usize,
    pub place: usize,
}

impl Places {
    /// Applies a [`Moved`] to the places of the member it names.
    pub fn moved(&mut self, m: Moved) {
        self.0[m.scope] = m.place;
    }
}

/// The sets of one worker, by room key.
#[derive(Default)]
pub(super) struct Rooms {
    sets: HashMap<RoomKey, Vec<usize>>,
}

impl Rooms {
    /// The connection in `slot`, described by `info`, joins its sets;
    /// returns its places, which it keeps until it leaves.
    pub fn join(&mut self, slot: usize, info: &ConnInfo) -> Places {
        let mut places = Places::default();
        for (place, scope) in places.0.iter_mut().zip(SCOPES) {
            let members = self.sets.entry(RoomKey::of(info, scope)).or_default();
            *place = members.len();
            members.push(slot);
        }
        places
    }

    /// The connection described by `info` leaves the sets it joined at
    /// `places`; `moved` is told of each member that took its place (the
    /// caller updates that member's [`Places`]). An emptied set is
    /// forgotten.
    pub fn leave(&mut self, info: &ConnInfo, places: Places, mut moved: impl FnMut(Moved)) {
        for (i, scope) in SCOPES.into_iter().enumerate() {
            let key = RoomKey::of(info, scope);
            let Some(members) = self.sets.get_mut(&key) else {
                continue;
            };
            let at = places.0[i];
            if at >= members.len() {
                continue;
            }
            members.swap_remove(at);
            if let Some(&slot) = members.get(at) {
                moved(Moved {
                    slot,
                    scope: i,
                    place: at,
                });
            }
            if members.is_empty() {
                self.sets.remove(&key);
            }
        }
    }

    /// The slots of the connections in the set of `key`.
    pub fn members(&self, key: &RoomKey) -> &[usize] {
        self.sets.get(key).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{ConnId, InfoRequest};

    /// A connection on `route` with `room` as its one parameter, if any.
    fn info(id: u64, route: &str, room: Option<&str>) -> ConnInfo {
        let params: Vec<(String, String)> = room
            .map(|r| ("room".to_string(), r.to_string()))
            .into_iter()
            .collect();
        let request = InfoRequest {
            route,
            path: "/",
            query: "",
            params: &params,
            headers: std::iter::empty(),
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        ConnInfo::new(ConnId(id), peer, request, None, Default::default(), false)
    }

    fn room(name: &str) -> RoomKey {
        RoomKey::Room("/chat/{room}".into(), vec![name.into()])
    }

    fn sorted(members: &[usize]) -> Vec<usize> {
        let mut v = members.to_vec();
        v.sort_unstable();
        v
    }

    /// Every member's places point back at it in each of its sets.
    fn check(rooms: &Rooms, infos: &[(usize, ConnInfo, Places)]) {
        for (slot, info, places) in infos {
            for (i, scope) in SCOPES.into_iter().enumerate() {
                let members = rooms.members(&RoomKey::of(info, scope));
                assert_eq!(
                    members.get(places.0[i]),
                    Some(slot),
                    "slot {slot} scope {i}"
                );
            }
        }
    }

    #[test]
    fn each_scope_has_its_members_and_a_leaver_is_replaced_by_the_last() {
        let mut rooms = Rooms::default();
        let mut joined: Vec<(usize, ConnInfo, Places)> = [
            (0, "/chat/{room}", Some("a")),
            (1, "/chat/{room}", Some("b")),
            (2, "/chat/{room}", Some("a")),
            (3, "/feed", None),
        ]
        .into_iter()
        .map(|(slot, route, r)| {
            let info = info(slot as u64 + 1, route, r);
            let places = rooms.join(slot, &info);
            (slot, info, places)
        })
        .collect();
        assert_eq!(sorted(rooms.members(&RoomKey::All)), [0, 1, 2, 3]);
        assert_eq!(
            sorted(rooms.members(&RoomKey::Route("/chat/{room}".into()))),
            [0, 1, 2]
        );
        assert_eq!(sorted(rooms.members(&room("a"))), [0, 2]);
        assert_eq!(rooms.members(&room("c")), &[] as &[usize]);
        check(&rooms, &joined);

        // Slot 0 leaves: the last member of each of its sets takes its place.
        let (_, gone, places) = joined.remove(0);
        rooms.leave(&gone, places, |m| {
            let member = joined.iter_mut().find(|(s, ..)| *s == m.slot).unwrap();
            member.2.moved(m);
        });
        assert_eq!(sorted(rooms.members(&RoomKey::All)), [1, 2, 3]);
        assert_eq!(rooms.members(&room("a")), [2]);
        check(&rooms, &joined);

        // Everyone leaves: no set is left behind.
        while let Some((_, gone, places)) = joined.pop() {
            rooms.leave(&gone, places, |m| {
                let member = joined.iter_mut().find(|(s, ..)| *s == m.slot).unwrap();
                member.2.moved(m);
            });
            check(&rooms, &joined);
        }
        assert!(rooms.sets.is_empty(), "emptied sets are forgotten");
    }

    #[test]
    fn places_stay_right_through_many_joins_and_leaves_in_any_order() {
        let mut rooms = Rooms::default();
        let mut joined: Vec<(usize, ConnInfo, Places)> = Vec::new();
        let mut seed: u64 = 7;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        for slot in 0..1_000usize {
            if !joined.is_empty() && next(3) == 0 {
                let at = next(joined.len() as u64) as usize;
                let (_, gone, places) = joined.swap_remove(at);
                rooms.leave(&gone, places, |m| {
                    let member = joined.iter_mut().find(|(s, ..)| *s == m.slot).unwrap();
                    member.2.moved(m);
                });
            } else {
                let name = ["a", "b", "c", "d"][next(4) as usize];
                let info = info(slot as u64 + 1, "/chat/{room}", Some(name));
                let places = rooms.join(slot, &info);
                joined.push((slot, info, places));
            }
            check(&rooms, &joined);
        }
        assert_eq!(rooms.members(&RoomKey::All).len(), joined.len());
    }
}
