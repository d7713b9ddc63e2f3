// Package target opens the mirror.Target for the new database named by a
// URL: package pgtarget for postgres:// (and postgresql://) URLs, package
// mysqltarget for mysql:// URLs (MySQL or MariaDB).
//
// Both apply each mirrored batch as one transaction, upserting and deleting
// row images by primary key, and sort errors the same way: a
// *mirror.RejectError when the new database refuses the data (the batch is
// dead-lettered), any other error when the failure is transient (the mirror
// retries). Open covers the options they share; use the packages directly
// for the rest (statement grouping limits, the statement cache), and
// type-assert the result to *pgtarget.Target for ReplicaRole.
package target
