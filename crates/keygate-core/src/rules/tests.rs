//! The rules, case by case.

use super::*;
use crate::authz::Mode;
use crate::authz::Scope;

const ORG: Uuid = Uuid::from_u128(1);
const OTHER: Uuid = Uuid::from_u128(2);
const ME: Uuid = Uuid::from_u128(10);
const YOU: Uuid = Uuid::from_u128(11);

fn key(user_id: Uuid, mode: Mode, org: Option<Uuid>, apps: &[&str]) -> Principal {
    let apps = apps.iter().map(|a| AppId::parse(a).expect("app id")).collect();
    Principal {
        key_id: 1,
        user_id,
        mode,
        scope: Scope { org, apps },
        expires_at: None,
        limited: false,
        retiring: false,
    }
}

#[test]
fn a_caller_sees_its_own_keys_in_scope_and_the_keys_of_orgs_it_administers() {
    let caller = key(ME, Mode::All, Some(ORG), &[]);
    let mine = key(ME, Mode::Read, Some(ORG), &["com.example.a"]);
    let mine_elsewhere = key(ME, Mode::Read, Some(OTHER), &[]);
    let mine_unscoped = key(ME, Mode::Read, None, &[]);
    let theirs = key(YOU, Mode::Read, Some(ORG), &[]);
    let theirs_unscoped = key(YOU, Mode::Read, None, &[]);
    assert!(may_see_key(&caller, &mine, Decision::Forbidden));
    assert!(!may_see_key(&caller, &mine, Decision::Invisible), "no longer acting there: blocked, removed");
    assert!(!may_see_key(&caller, &mine_elsewhere, Decision::Invisible));
    assert!(!may_see_key(&caller, &mine_unscoped, Decision::Forbidden), "wider than the caller");
    assert!(may_see_key(&caller, &theirs, Decision::Allow));
    assert!(!may_see_key(&caller, &theirs, Decision::Forbidden));
    assert!(!may_see_key(&caller, &theirs_unscoped, Decision::Allow), "unscoped keys are their owner's");
}

#[test]
fn key_management_needs_membership_inside_the_scope() {
    let scoped = key(ME, Mode::All, Some(ORG), &[]);
    assert_eq!(key_management_role(&scoped, ORG, Some(Role::Read)), Ok(Role::Read));
    assert_eq!(key_management_role(&scoped, ORG, None), Err(Refusal::Invisible));
    assert_eq!(key_management_role(&scoped, OTHER, Some(Role::Admin)), Err(Refusal::Invisible));
    let unscoped = key(ME, Mode::All, None, &[]);
    assert_eq!(key_management_role(&unscoped, OTHER, Some(Role::Write)), Ok(Role::Write));
}

/// Every operation on another member's role, keys, blocks or
/// invitations goes through one rule: a lower or equal rank is refused.
#[test]
fn a_member_acts_on_another_only_from_a_strictly_higher_role() {
    for actor in Role::ALL {
        for target in Role::ALL {
            let expected = if actor.outranks(target) { Ok(()) } else { Err(Refusal::Outranked) };
            assert_eq!(may_act_on_member(ME, actor, YOU, Some(target)), expected, "{actor:?} on {target:?}");
            assert_eq!(may_act_on_member(ME, actor, ME, Some(target)), Ok(()), "on oneself");
        }
        assert_eq!(may_act_on_member(ME, actor, YOU, None), Ok(()), "a former member");
    }
}

#[test]
fn an_admin_never_changes_the_key_of_a_member_at_or_above_them() {
    let admin = key(ME, Mode::All, Some(ORG), &[]);
    let theirs = key(YOU, Mode::Read, Some(ORG), &[]);
    assert_eq!(may_change_key(&admin, Role::Admin, &theirs, Some(Role::SuperAdmin)), Err(Refusal::Outranked));
    assert_eq!(may_change_key(&admin, Role::Admin, &theirs, Some(Role::Admin)), Err(Refusal::Outranked));
    assert_eq!(may_change_key(&admin, Role::Admin, &theirs, Some(Role::Write)), Ok(()));
    assert_eq!(may_change_key(&admin, Role::Admin, &theirs, None), Ok(()), "a former member's key");
    let own = key(ME, Mode::Read, Some(ORG), &[]);
    assert_eq!(may_change_key(&admin, Role::Read, &own, Some(Role::Read)), Ok(()));
}

#[test]
fn limits_change_only_by_an_unrestrained_admin_key_and_never_by_the_key_itself() {
    let admin = key(ME, Mode::All, Some(ORG), &[]);
    let other = Principal { key_id: 2, ..key(YOU, Mode::Read, Some(ORG), &[]) };
    assert_eq!(may_change_limits(&admin, Some(Role::Admin), &other, Decision::Allow), Ok(()));
    assert_eq!(
        may_change_limits(&admin, Some(Role::Admin), &admin, Decision::Allow),
        Err(Refusal::OwnLimits)
    );
    let limited = Principal { limited: true, ..admin.clone() };
    assert_eq!(
        may_change_limits(&limited, Some(Role::Admin), &other, Decision::Allow),
        Err(Refusal::RestrainedKey)
    );
    let app_limited = key(ME, Mode::All, Some(ORG), &["com.example.a"]);
    assert_eq!(
        may_change_limits(&app_limited, Some(Role::Admin), &other, Decision::Allow),
        Err(Refusal::RestrainedKey)
    );
    assert_eq!(
        may_change_limits(&admin, Some(Role::Admin), &other, Decision::Forbidden),
        Err(Refusal::LimitsNeedAdministrator)
    );
    let unscoped = Principal { key_id: 3, ..key(YOU, Mode::Read, None, &[]) };
    assert_eq!(
        may_change_limits(&admin, Some(Role::Admin), &unscoped, Decision::Allow),
        Err(Refusal::UnscopedLimits)
    );
    // Limits set from above on an admin's own other key stay theirs to bear.
    let own_other = Principal { key_id: 4, ..key(ME, Mode::Read, Some(ORG), &[]) };
    assert_eq!(
        may_change_limits(&admin, Some(Role::Admin), &own_other, Decision::Allow),
        Err(Refusal::OwnLimits)
    );
    assert_eq!(may_change_limits(&admin, Some(Role::SuperAdmin), &own_other, Decision::Allow), Ok(()));
}

#[test]
fn only_the_owner_rotates() {
    let caller = key(ME, Mode::All, Some(ORG), &[]);
    assert_eq!(may_rotate_key(&caller, &key(ME, Mode::Read, Some(ORG), &[])), Ok(()));
    assert_eq!(may_rotate_key(&caller, &key(YOU, Mode::Read, Some(ORG), &[])), Err(Refusal::NotTheOwner));
}

#[test]
fn members_are_changed_only_by_admins_from_above_and_never_above_their_role() {
    use Role::*;
    let change = |acting, current, new| may_change_membership(ME, acting, YOU, current, new);
    assert_eq!(change(None, Some(Read), Some(Read)), Err(Refusal::Invisible));
    assert_eq!(change(Some(Write), Some(Read), Some(Upload)), Err(Refusal::NotAnAdministrator));
    assert_eq!(change(Some(Admin), Some(Read), Some(Admin)), Ok(()), "up to their own role");
    assert_eq!(change(Some(Admin), Some(Read), Some(SuperAdmin)), Err(Refusal::RoleAboveOwn));
    assert_eq!(change(Some(Admin), Some(SuperAdmin), Some(Read)), Err(Refusal::Outranked));
    assert_eq!(change(Some(Admin), Some(SuperAdmin), None), Err(Refusal::Outranked));
    assert_eq!(change(Some(Admin), Some(Admin), None), Err(Refusal::Outranked), "a peer");
    assert_eq!(change(Some(SuperAdmin), Some(SuperAdmin), Some(Read)), Err(Refusal::Outranked), "a peer");
    assert_eq!(change(Some(Admin), Some(Write), None), Ok(()));
    assert_eq!(change(Some(Admin), None, Some(Read)), Err(Refusal::NotAMember), "newcomers are invited");
    let own = |acting, current, new| may_change_membership(ME, acting, ME, current, new);
    assert_eq!(own(Some(Admin), Some(Admin), Some(Read)), Ok(()), "stepping down");
    assert_eq!(own(Some(Admin), Some(Admin), Some(SuperAdmin)), Err(Refusal::RoleAboveOwn));
    assert_eq!(own(Some(SuperAdmin), Some(SuperAdmin), None), Ok(()), "leaving");
}

#[test]
fn invitations_offer_only_roles_below_the_inviters_and_only_to_non_members() {
    use Role::*;
    assert_eq!(may_invite(None, Read, None), Err(Refusal::Invisible));
    assert_eq!(may_invite(Some(Write), Read, None), Err(Refusal::NotAnAdministrator));
    assert_eq!(may_invite(Some(Admin), Write, None), Ok(()));
    assert_eq!(may_invite(Some(Admin), Admin, None), Err(Refusal::InviteAtOrAboveOwn));
    assert_eq!(may_invite(Some(SuperAdmin), SuperAdmin, None), Err(Refusal::InviteAtOrAboveOwn));
    assert_eq!(may_invite(Some(SuperAdmin), Admin, None), Ok(()));
    assert_eq!(may_invite(Some(SuperAdmin), Read, Some(Read)), Err(Refusal::AlreadyMember));
}

#[test]
fn only_a_member_holds_a_key_scoped_to_the_organization() {
    assert_eq!(may_hold_key_in_org(None), Err(Refusal::NotAMember));
    for role in Role::ALL {
        assert_eq!(may_hold_key_in_org(Some(role)), Ok(role));
    }
}

#[test]
fn an_invitation_is_redeemed_only_by_its_invitee_while_its_inviter_could_issue_it() {
    use Role::*;
    let all = |user| Some(Presented { user, mode: Mode::All, free: true });
    let now = Utc::now();
    let open = now + chrono::Duration::days(7);
    let key = IssuingKey { expires_at: None, enabled: true, restrained: false, blocked: false };
    let redeem = |inviter, invited, invitee, presented| {
        may_redeem(inviter, invited, open, Some(key), now, invitee, presented)
    };
    let existing = Invitee::Existing { user: YOU, role: None };
    assert_eq!(redeem(Some(Admin), Write, Invitee::New, None), Ok(Redemption::NewAccount));
    assert_eq!(redeem(Some(Admin), Write, existing, all(YOU)), Ok(Redemption::Join { user: YOU }));
    // The inviter was demoted, removed or lost the right meanwhile.
    assert_eq!(redeem(Some(Write), Read, Invitee::New, None), Err(Refusal::InvitationVoid));
    assert_eq!(redeem(Some(Admin), Admin, Invitee::New, None), Err(Refusal::InvitationVoid));
    assert_eq!(redeem(None, Read, Invitee::New, None), Err(Refusal::InvitationVoid));
    // The key it was issued with is gone, expired, disabled, blocked or restrained now.
    let past = Some(now - chrono::Duration::seconds(1));
    for issuing in [
        None,
        Some(IssuingKey { expires_at: past, ..key }),
        Some(IssuingKey { enabled: false, ..key }),
        Some(IssuingKey { blocked: true, ..key }),
        Some(IssuingKey { restrained: true, ..key }),
    ] {
        let void = may_redeem(Some(Admin), Read, open, issuing, now, Invitee::New, None);
        assert_eq!(void, Err(Refusal::InvitationVoid), "{issuing:?}");
    }
    // The invitation itself expired: its end is exclusive.
    for expired in [now, now - chrono::Duration::seconds(1)] {
        let void = may_redeem(Some(Admin), Read, expired, Some(key), now, Invitee::New, None);
        assert_eq!(void, Err(Refusal::InvitationVoid), "{expired}");
    }
    // An existing account, only with its own key of mode `all`.
    assert_eq!(redeem(Some(Admin), Read, existing, None), Err(Refusal::InvitationNeedsOwnKey));
    assert_eq!(redeem(Some(Admin), Read, existing, all(ME)), Err(Refusal::NotTheInvitee));
    let read_key = Some(Presented { user: YOU, mode: Mode::Read, free: true });
    let restrained = Some(Presented { user: YOU, mode: Mode::All, free: false });
    assert_eq!(
        redeem(Some(Role::Admin), Role::Read, existing, restrained),
        Err(Refusal::InvitationNeedsOwnKey),
        "a limited or retiring key speaks for nobody"
    );
    assert_eq!(redeem(Some(Admin), Read, existing, read_key), Err(Refusal::InvitationNeedsOwnKey));
    let member = Invitee::Existing { user: YOU, role: Some(Read) };
    assert_eq!(redeem(Some(SuperAdmin), Write, member, all(YOU)), Err(Refusal::AlreadyMember));
    // A new address: whoever holds the code, and nobody else's key.
    assert_eq!(redeem(Some(Admin), Read, Invitee::New, all(ME)), Err(Refusal::NotTheInvitee));
}

#[test]
fn a_first_key_expires_as_late_as_the_policy_lets_it() {
    let now = Utc::now();
    let days = |d| Some(now + chrono::Duration::days(d));
    assert_eq!(first_key_expiry(ExpiryPolicy::default(), now, None), None);
    let required = ExpiryPolicy { require_expiration: true, max_days: None };
    assert_eq!(first_key_expiry(required, now, None), days(FIRST_KEY_REQUIRED_EXPIRY_DAYS));
    let bounded = ExpiryPolicy { require_expiration: false, max_days: Some(30) };
    assert_eq!(first_key_expiry(bounded, now, None), days(30));
    assert_eq!(bounded.check(first_key_expiry(bounded, now, None), now), Ok(()));
    // Never after the key the invitation was issued with.
    assert_eq!(first_key_expiry(ExpiryPolicy::default(), now, days(1)), days(1));
    assert_eq!(first_key_expiry(bounded, now, days(1)), days(1));
    assert_eq!(first_key_expiry(bounded, now, days(60)), days(30));
}

#[test]
fn invitations_are_withdrawn_by_their_issuer_or_from_above_the_issuer() {
    use Role::*;
    assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(ME), Some(Admin)), Ok(()));
    assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(YOU), Some(Write)), Ok(()), "from above");
    assert_eq!(
        may_withdraw_invite(ME, Some(Admin), Some(YOU), Some(Admin)),
        Err(Refusal::Outranked),
        "a peer's"
    );
    assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(YOU), Some(SuperAdmin)), Err(Refusal::Outranked));
    assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(YOU), None), Ok(()), "a former member's");
    assert_eq!(may_withdraw_invite(ME, Some(Write), Some(ME), Some(Write)), Err(Refusal::NotAnAdministrator));
    assert_eq!(may_withdraw_invite(ME, None, Some(ME), None), Err(Refusal::Invisible));
}

#[test]
fn a_restrained_key_manages_itself_alone() {
    let free = key(ME, Mode::All, Some(ORG), &[]);
    let limited = Principal { limited: true, ..free.clone() };
    let app_limited = key(ME, Mode::All, Some(ORG), &["com.example.a"]);
    let sibling = Principal { key_id: 2, ..key(ME, Mode::Read, Some(ORG), &[]) };
    assert_eq!(may_manage_other_key(&free, &sibling), Ok(()));
    assert_eq!(may_manage_other_key(&limited, &sibling), Err(Refusal::RestrainedKey));
    assert_eq!(may_manage_other_key(&app_limited, &sibling), Err(Refusal::RestrainedKey));
    assert_eq!(may_manage_other_key(&limited, &limited), Ok(()), "itself");
}

#[test]
fn only_owners_set_the_limits_every_key_shares() {
    assert_eq!(may_change_shared_limits(Role::SuperAdmin), Ok(()));
    assert_eq!(may_change_shared_limits(Role::Admin), Err(Refusal::SharedLimitsNeedOwner));
}

#[test]
fn blocks_reach_only_members_unscoped_keys_from_above() {
    use Role::*;
    let theirs = Principal { key_id: 2, ..key(YOU, Mode::All, None, &[]) };
    let block = |role, key: &Principal, owner| may_block(ME, 1, Some(role), ORG, key, owner);
    assert_eq!(block(Admin, &theirs, Some(Write)), Ok(()));
    assert_eq!(block(Admin, &theirs, Some(Admin)), Err(Refusal::Outranked));
    assert_eq!(block(Admin, &theirs, Some(SuperAdmin)), Err(Refusal::Outranked));
    assert_eq!(block(Admin, &theirs, None), Err(Refusal::NotBlockable));
    assert_eq!(block(Write, &theirs, Some(Read)), Err(Refusal::NotAnAdministrator));
    let calling = key(ME, Mode::All, None, &[]);
    assert_eq!(block(SuperAdmin, &calling, Some(SuperAdmin)), Err(Refusal::OwnKeyBlock));
    let other_own = Principal { key_id: 5, ..calling.clone() };
    assert_eq!(block(Admin, &other_own, Some(Admin)), Ok(()), "another key of one's own");
    let scoped = Principal { key_id: 3, ..key(YOU, Mode::Read, Some(ORG), &[]) };
    assert_eq!(block(SuperAdmin, &scoped, Some(Read)), Err(Refusal::ScopedKeyBlock(3)));
    let elsewhere = Principal { key_id: 4, ..key(YOU, Mode::Read, Some(OTHER), &[]) };
    assert_eq!(block(SuperAdmin, &elsewhere, Some(Read)), Err(Refusal::NotBlockable));
    assert_eq!(may_unblock(Some(Admin), Some(Write)), Ok(()));
    assert_eq!(may_unblock(Some(Admin), Some(Admin)), Err(Refusal::Outranked));
    assert_eq!(may_unblock(Some(Write), Some(Read)), Err(Refusal::NotAnAdministrator));
    assert_eq!(may_unblock(None, Some(Read)), Err(Refusal::Invisible));
}

#[test]
fn the_last_super_admin_stays() {
    use Role::*;
    assert_eq!(keeps_a_super_admin(Some(SuperAdmin), Some(Admin), 1), Err(Refusal::LastSuperAdmin));
    assert_eq!(keeps_a_super_admin(Some(SuperAdmin), None, 1), Err(Refusal::LastSuperAdmin));
    assert_eq!(keeps_a_super_admin(Some(SuperAdmin), Some(Admin), 2), Ok(()));
    assert_eq!(keeps_a_super_admin(Some(SuperAdmin), Some(SuperAdmin), 1), Ok(()));
    assert_eq!(keeps_a_super_admin(Some(Admin), None, 1), Ok(()));
    assert_eq!(keeps_a_super_admin(None, Some(Read), 0), Ok(()));
}

#[test]
fn only_unscoped_all_keys_create_organizations() {
    assert!(may_create_organization(&key(ME, Mode::All, None, &[])));
    assert!(!may_create_organization(&key(ME, Mode::Write, None, &[])));
    assert!(!may_create_organization(&key(ME, Mode::All, Some(ORG), &[])));
    assert!(!may_create_organization(&key(ME, Mode::All, None, &["com.example.a"])));
    assert!(!may_create_organization(&Principal { limited: true, ..key(ME, Mode::All, None, &[]) }));
    assert!(!may_create_organization(&Principal { retiring: true, ..key(ME, Mode::All, None, &[]) }));
}

#[test]
fn the_expiry_policy_binds_keys() {
    let now = Utc::now();
    let soon = Some(now + chrono::Duration::days(10));
    let late = Some(now + chrono::Duration::days(40));
    let open = ExpiryPolicy::default();
    assert_eq!(open.check(None, now), Ok(()));
    let required = ExpiryPolicy { require_expiration: true, max_days: None };
    assert_eq!(required.check(None, now), Err(PolicyViolation::ExpirationRequired));
    assert_eq!(required.check(late, now), Ok(()));
    let bounded = ExpiryPolicy { require_expiration: false, max_days: Some(30) };
    assert_eq!(bounded.check(soon, now), Ok(()));
    assert_eq!(bounded.check(late, now), Err(PolicyViolation::ExceedsMaxDays(30)));
    assert_eq!(bounded.check(None, now), Err(PolicyViolation::ExceedsMaxDays(30)));
}

#[test]
fn verify_decides_like_every_endpoint() {
    let a = AppId::parse("com.example.a").expect("app id");
    let b = AppId::parse("com.example.b").expect("app id");
    let nothing = VerifyTarget { org: None, app: None };
    let org_wide = key(ME, Mode::Upload, Some(ORG), &[]);
    assert!(verify(&org_wide, nothing, Some(Role::Admin), Action::Upload), "the key's own org");
    assert!(!verify(&org_wide, nothing, Some(Role::Read), Action::Upload), "the role binds");
    assert!(!verify(&org_wide, nothing, Some(Role::Admin), Action::Administer), "the mode binds");
    let scoped = key(ME, Mode::Upload, Some(ORG), &["com.example.a"]);
    assert!(
        !verify(&scoped, nothing, Some(Role::Admin), Action::Upload),
        "app-limited: org level reads only"
    );
    let on_a = VerifyTarget { org: None, app: Some((ORG, &a)) };
    let on_b = VerifyTarget { org: None, app: Some((ORG, &b)) };
    assert!(verify(&scoped, on_a, Some(Role::Admin), Action::Write));
    assert!(!verify(&scoped, on_b, Some(Role::Admin), Action::Read), "outside the app scope");
    let mismatch = VerifyTarget { org: Some(OTHER), app: Some((ORG, &a)) };
    assert!(!verify(&scoped, mismatch, Some(Role::Admin), Action::Read), "org and app disagree");
    let unscoped = key(ME, Mode::All, None, &[]);
    assert!(verify(&unscoped, nothing, Some(Role::Read), Action::Read), "what every role may");
    // Tenth review: a read member's unscoped key passed `admin` rules.
    for action in [Action::Write, Action::Upload, Action::Administer, Action::Own] {
        assert!(
            !verify(&unscoped, nothing, Some(Role::SuperAdmin), action),
            "{action:?}: no role to judge it by"
        );
    }
    // Twelfth review: removed from every organization, or blocked in each,
    // its owner's key still read there.
    assert!(!verify(&unscoped, nothing, None, Action::Read), "a member nowhere");
    let elsewhere = VerifyTarget { org: Some(OTHER), app: None };
    assert!(!verify(&unscoped, elsewhere, None, Action::Read), "not a member there");
}

#[test]
fn an_organization_is_changed_by_its_administrators_and_its_shared_limits_by_its_owners() {
    let caller = key(ME, Mode::All, None, &[]);
    let update = |role, limits| may_update_organization(&caller, role, ORG, limits);
    assert_eq!(update(Some(Role::Admin), false), Ok(()));
    assert_eq!(update(Some(Role::Admin), true), Err(Refusal::SharedLimitsNeedOwner));
    assert_eq!(update(Some(Role::SuperAdmin), true), Ok(()));
    assert_eq!(update(Some(Role::Write), false), Err(Refusal::NotAnAdministrator));
    assert_eq!(update(None, false), Err(Refusal::Invisible), "not a member, or blocked there");
    let read_key = key(ME, Mode::Read, None, &[]);
    assert_eq!(
        may_update_organization(&read_key, Some(Role::SuperAdmin), ORG, false),
        Err(Refusal::NotAnAdministrator)
    );
    let elsewhere = key(ME, Mode::All, Some(OTHER), &[]);
    assert_eq!(
        may_update_organization(&elsewhere, Some(Role::SuperAdmin), ORG, false),
        Err(Refusal::Invisible)
    );
}

#[test]
fn only_an_owner_deletes_an_organization() {
    let caller = key(ME, Mode::All, None, &[]);
    assert_eq!(may_delete_organization(&caller, Some(Role::SuperAdmin), ORG), Ok(()));
    assert_eq!(may_delete_organization(&caller, Some(Role::Admin), ORG), Err(Refusal::Forbidden));
    assert_eq!(may_delete_organization(&caller, None, ORG), Err(Refusal::Invisible));
    let write_key = key(ME, Mode::Write, None, &[]);
    assert_eq!(may_delete_organization(&write_key, Some(Role::SuperAdmin), ORG), Err(Refusal::Forbidden));
}

#[test]
fn a_storage_quota_bounds_what_is_left_and_what_is_kept() {
    assert_eq!(storage_left(None, 10), None);
    assert_eq!(storage_left(Some(100), 30), Some(70));
    assert_eq!(storage_left(Some(100), 130), Some(0), "over a lowered quota: full");
    assert_eq!(within_storage_quota(100, Some(100)), Ok(()));
    assert_eq!(within_storage_quota(101, Some(100)), Err(Refusal::StorageQuota(100)));
    assert_eq!(within_storage_quota(u64::MAX, None), Ok(()));
    let allowance = |bytes, by_quota| Ok(UploadAllowance { bytes, by_quota });
    assert_eq!(upload_allowance(None, 10, 50), allowance(50, false));
    assert_eq!(upload_allowance(Some(100), 30, 50), allowance(50, false));
    assert_eq!(upload_allowance(Some(100), 60, 50), allowance(40, true));
    assert_eq!(upload_allowance(Some(100), 100, 50), Err(Refusal::StorageQuota(100)));
    assert_eq!(upload_allowance(Some(100), 130, 50), Err(Refusal::StorageQuota(100)));
}

#[test]
fn a_blocked_key_acts_as_a_non_member() {
    assert_eq!(role_as_key_acts(Some(Role::SuperAdmin), true), None);
    assert_eq!(role_as_key_acts(Some(Role::Read), false), Some(Role::Read));
    assert_eq!(role_as_key_acts(None, false), None);
}

#[test]
fn only_a_free_key_of_an_administrator_administers() {
    let free = key(ME, Mode::All, None, &[]);
    assert_eq!(may_administer(&free, Some(Role::Admin), ORG), Ok(Role::Admin));
    assert_eq!(may_administer(&free, Some(Role::Write), ORG), Err(Refusal::NotAnAdministrator));
    assert_eq!(may_administer(&free, None, ORG), Err(Refusal::Invisible), "removed, or blocked there");
    let limited = Principal { limited: true, ..free.clone() };
    assert_eq!(may_administer(&limited, Some(Role::SuperAdmin), ORG), Err(Refusal::NotAnAdministrator));
    let retiring = Principal { retiring: true, ..free };
    assert_eq!(may_administer(&retiring, Some(Role::SuperAdmin), ORG), Err(Refusal::NotAnAdministrator));
}
