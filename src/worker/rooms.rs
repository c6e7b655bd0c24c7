//! Which open connections are in which room, so that a broadcast goes
//! to its receivers without looking at every connection of the worker.
//!
//! Each open connection is a member of three sets, one per broadcast
//! scope: everyone, its route template, and its room (the
//! route with its parameter values, e.g. `/chat/{room}` with `lobby`). A
//! set is a list of slots, and a connection remembers its place in each
//! ([`Places`]), so that leaving costs the same in a room of ten as in a
//! room of a million: the last member takes the leaver's place.
//!
//! Everyone and the routes are plain lists (a route by its index, so
//! joining them hashes and allocates nothing); only the rooms of routes
//! with parameters are looked up by key. The room of a route without
//! parameters is the route's own list.

use std::collections::HashMap;

use crate::handler::{ConnInfo, Scope};
use crate::relay::RoomKey;

/// A connection's places in its three sets (see the module comment; the
/// third is unused on a route without parameters).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Places([u32; 3]);

/// A member that took a leaver's place: its slot, which of its places
/// moved (0 everyone, 1 the route, 2 the room) and to where.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moved {
    /// The member's slot.
    pub slot: usize,
    /// Which of its places: 0 everyone, 1 the route, 2 the room.
    pub scope: usize,
    /// Its new place there.
    pub place: u32,
}

impl Places {
    /// Applies a [`Moved`] to the places of the member it names.
    pub fn moved(&mut self, m: Moved) {
        self.0[m.scope] = m.place;
    }
}

/// One route's members, and its template (to find it by name).
#[derive(Default)]
struct Route {
    template: Box<str>,
    members: Vec<u32>,
}

/// The place a new member of `members` takes.
fn place(members: &[u32]) -> u32 {
    members.len() as u32
}

/// The sets of one worker.
#[derive(Default)]
pub(super) struct Rooms {
    everyone: Vec<u32>,
    /// By route index.
    routes: Vec<Route>,
    /// The rooms of routes with parameters, by key.
    rooms: HashMap<RoomKey, Vec<u32>>,
}

impl Rooms {
    /// The connection in `slot`, on the route with index `route` and
    /// described by `info`, joins its sets; returns its places, which it
    /// keeps until it leaves.
    pub fn join(&mut self, slot: usize, route: usize, info: &ConnInfo) -> Places {
        // Slots are u32 (and so are places): a worker's table is far
        // smaller than 4 billion connections, and members stay compact.
        let slot = slot as u32;
        if self.routes.len() <= route {
            self.routes.resize_with(route + 1, Route::default);
        }
        let r = &mut self.routes[route];
        if r.template.is_empty() {
            r.template = info.route().into();
        }
        let mut places = Places([place(&self.everyone), place(&r.members), 0]);
        self.everyone.push(slot);
        r.members.push(slot);
        if info.params().len() > 0 {
            let room = self
                .rooms
                .entry(RoomKey::of(info, Scope::Room))
                .or_default();
            places.0[2] = place(room);
            room.push(slot);
        }
        places
    }

    /// The connection on route `route`, described by `info`, leaves the
    /// sets it joined at `places`; `moved` is told of each member that
    /// took its place (the caller updates that member's [`Places`]). An
    /// emptied room is forgotten.
    pub fn leave(
        &mut self,
        route: usize,
        info: &ConnInfo,
        places: Places,
        mut moved: impl FnMut(Moved),
    ) {
        let mut out = |members: &mut Vec<u32>, scope: usize| {
            let place = places.0[scope];
            if (place as usize) < members.len() {
                members.swap_remove(place as usize);
                if let Some(&slot) = members.get(place as usize) {
                    moved(Moved {
                        slot: slot as usize,
                        scope,
                        place,
                    });
                }
            }
        };
        out(&mut self.everyone, 0);
        if let Some(r) = self.routes.get_mut(route) {
            out(&mut r.members, 1);
        }
        if info.params().len() > 0 {
            let key = RoomKey::of(info, Scope::Room);
            if let Some(room) = self.rooms.get_mut(&key) {
                out(room, 2);
                if room.is_empty() {
                    self.rooms.remove(&key);
                }
            }
        }
    }

    /// The slots of the connections in the set of `key`.
    pub fn members(&self, key: &RoomKey) -> &[u32] {
        let route = |template: &str| {
            self.routes
                .iter()
                .find(|r| &*r.template == template)
                .map_or(&[][..], |r| r.members.as_slice())
        };
        match key {
            RoomKey::All => &self.everyone,
            RoomKey::Route(template) => route(template),
            RoomKey::Room(template, values) if values.is_empty() => route(template),
            RoomKey::Room(..) => self.rooms.get(key).map_or(&[], Vec::as_slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scopes, in the order of a connection's [`Places`].
    const SCOPES: [Scope; 3] = [Scope::All, Scope::Route, Scope::Room];
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

    /// The tests' route indexes: `/chat/{room}` 0, the others 1.
    fn route_index(info: &ConnInfo) -> usize {
        usize::from(info.route() != "/chat/{room}")
    }

    fn room(name: &str) -> RoomKey {
        RoomKey::Room("/chat/{room}".into(), vec![name.into()])
    }

    fn sorted(members: &[u32]) -> Vec<u32> {
        let mut v = members.to_vec();
        v.sort_unstable();
        v
    }

    /// Every member's places point back at it in each of its sets.
    fn check(rooms: &Rooms, infos: &[(usize, ConnInfo, Places)]) {
        for (slot, info, places) in infos {
            let scopes = if info.params().len() > 0 { 3 } else { 2 };
            for (i, scope) in SCOPES.into_iter().enumerate().take(scopes) {
                let members = rooms.members(&RoomKey::of(info, scope));
                let at = places.0[i] as usize;
                assert_eq!(
                    members.get(at),
                    Some(&(*slot as u32)),
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
            let places = rooms.join(slot, route_index(&info), &info);
            (slot, info, places)
        })
        .collect();
        assert_eq!(sorted(rooms.members(&RoomKey::All)), [0, 1, 2, 3]);
        assert_eq!(
            sorted(rooms.members(&RoomKey::Route("/chat/{room}".into()))),
            [0, 1, 2]
        );
        assert_eq!(sorted(rooms.members(&room("a"))), [0, 2]);
        assert_eq!(rooms.members(&room("c")), &[] as &[u32]);
        check(&rooms, &joined);

        // Slot 0 leaves: the last member of each of its sets takes its place.
        let (_, gone, places) = joined.remove(0);
        rooms.leave(route_index(&gone), &gone, places, |m| {
            let member = joined.iter_mut().find(|(s, ..)| *s == m.slot).unwrap();
            member.2.moved(m);
        });
        assert_eq!(sorted(rooms.members(&RoomKey::All)), [1, 2, 3]);
        assert_eq!(rooms.members(&room("a")), [2]);
        // A route without parameters is its own room.
        let feed = RoomKey::Room("/feed".into(), Vec::new());
        assert_eq!(rooms.members(&feed), [3]);
        check(&rooms, &joined);

        // Everyone leaves: no set is left behind.
        while let Some((_, gone, places)) = joined.pop() {
            rooms.leave(route_index(&gone), &gone, places, |m| {
                let member = joined.iter_mut().find(|(s, ..)| *s == m.slot).unwrap();
                member.2.moved(m);
            });
            check(&rooms, &joined);
        }
        assert!(rooms.rooms.is_empty(), "emptied rooms are forgotten");
        assert!(rooms.everyone.is_empty());
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
                rooms.leave(route_index(&gone), &gone, places, |m| {
                    let member = joined.iter_mut().find(|(s, ..)| *s == m.slot).unwrap();
                    member.2.moved(m);
                });
            } else {
                let name = ["a", "b", "c", "d"][next(4) as usize];
                let info = info(slot as u64 + 1, "/chat/{room}", Some(name));
                let places = rooms.join(slot, route_index(&info), &info);
                joined.push((slot, info, places));
            }
            check(&rooms, &joined);
        }
        assert_eq!(rooms.members(&RoomKey::All).len(), joined.len());
    }
}
